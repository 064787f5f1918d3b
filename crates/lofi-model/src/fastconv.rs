//! 2-D convolution for burn's CPU (flex) backend, forward and both backward passes, as
//! im2col + one GEMM per frame (or per group of frames) on the NCHW data.
//!
//! # Why
//! Profiling the TSM-ResNet + G-TAD training step on the flex backend (BENCHMARKS.md, "Where the
//! time went") showed the encoder's convolutions dominating, and within them the two backward
//! passes, which burn 0.22.1 derives generically: the input gradient as a transposed convolution
//! and the weight gradient as a convolution of the transposed input by the transposed output
//! gradient (`[C_in, N, H, W]` convolved with `[C_out, N, Ho, Wo]` as a kernel). The latter turns
//! a `C_out x (C_in k k)` result into an im2col over `N Ho Wo`-long rows built by a serial
//! layout conversion of both full tensors: the largest single cost of the step (about half of
//! the encoder's convolution time). The forward pass also converts every input to NHWC serially
//! before its tiled im2col.
//!
//! This module computes the same three quantities directly, per frame, with the frames split
//! over the rayon threads (every thread owns whole frames, so there is no synchronisation inside
//! a convolution; on small maps several frames share one GEMM, see `group_size`):
//! - forward: `y[f] = W x col(x[f])`, `col` the `(C_in k k) x (Ho Wo)` patch matrix of frame `f`
//!   (a 1x1, stride-1, unpadded convolution uses `x[f]` itself);
//! - input gradient: `dx[f] = col2im(W^T x dy[f])`;
//! - weight gradient: `dW = sum_f dy[f] x col(x[f])^T`, one accumulator per thread, summed in a
//!   fixed order at the end (deterministic for a given thread count).
//!
//! Only the patch matrix of one frame group per thread is ever allocated (at most 4 MiB, reserved
//! on the calling thread), so the backward pass needs less memory than burn's generic one (which
//! copies `x` and `dy` whole). Results equal burn's up to float rounding (the sums run in a
//! different order); the tests below compare against burn's own convolution and its gradients.
//!
//! # Scope
//! f32, `groups = 1`, dilation 1, symmetric padding, on `Device::flex()` with or without
//! autodiff: the convolutions of TSM-ResNet and G-TAD's ungrouped 2-D convolutions. Anything
//! else [`conv2d`] is called with goes to burn's `conv2d` unchanged, so callers never have to
//! check.
//!
//! The GEMMs are those of the `gemm` crate, the one burn's flex backend itself uses.
//! `LOFI_FASTCONV=0` in the environment turns the module off (see [`enabled`]).
#![allow(unsafe_code)] // one call into `gemm::gemm`, wrapped by the checked `sgemm` below

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Bytes, DType, Shape, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;
use burn_autodiff::NodeId;
use burn_backend::tensor::FloatTensor;
use burn_flex::{Flex, FlexTensor, Layout};
use rayon::prelude::*;

#[cfg(test)]
thread_local! {
    /// Calls that took this module's kernels (so the tests can tell them from the fallback).
    static FAST_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub(crate) fn count_fast_call() {
    #[cfg(test)]
    FAST_CALLS.with(|c| c.set(c.get() + 1));
}

/// Fast-path calls so far on this thread.
#[cfg(test)]
pub(crate) fn fast_calls() -> usize {
    FAST_CALLS.with(|c| c.get())
}

/// Geometry of one convolution (per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    /// Frames (batch).
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(x: [usize; 4], wt: [usize; 4], stride: [usize; 2], pad: [usize; 2]) -> Option<Self> {
        let [n, ci, h, w] = x;
        let [co, wci, kh, kw] = wt;
        if wci != ci || stride.contains(&0) || h + 2 * pad[0] < kh || w + 2 * pad[1] < kw {
            return None;
        }
        Some(Self {
            n,
            ci,
            h,
            w,
            co,
            kh,
            kw,
            sh: stride[0],
            sw: stride[1],
            ph: pad[0],
            pw: pad[1],
            ho: (h + 2 * pad[0] - kh) / stride[0] + 1,
            wo: (w + 2 * pad[1] - kw) / stride[1] + 1,
        })
    }
    /// Rows of the patch matrix (`C_in k k`).
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }
    /// Output positions per frame.
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn in_frame(&self) -> usize {
        self.ci * self.h * self.w
    }
    fn out_frame(&self) -> usize {
        self.co * self.p()
    }
    /// A 1x1, stride-1, unpadded convolution: the frame is its own patch matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

/// `[lo, hi)`: the output positions `o` whose input index `o * s + k - p` lies in `[0, len)`.
fn valid_range(out: usize, k: usize, s: usize, p: usize, len: usize) -> (usize, usize) {
    let lo = if p > k { (p - k).div_ceil(s) } else { 0 };
    let hi = if len + p > k {
        ((len + p - k - 1) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Writes the patches of one frame `x` (`C_in x H x W`) into columns `off..off + P` of `col`, a
/// row-major matrix with `K` rows of `ld` elements.
fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let p = g.p();
    let (lo_w, hi_w): (Vec<usize>, Vec<usize>) = (0..g.kw)
        .map(|kj| valid_range(g.wo, kj, g.sw, g.pw, g.w))
        .unzip();
    for c in 0..g.ci {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * ld + off..][..p];
                let (lo, hi) = (lo_w[kj], hi_w[kj]);
                for oh in 0..g.ho {
                    let dst = &mut row[oh * g.wo..(oh + 1) * g.wo];
                    let ih = (oh * g.sh + ki) as isize - g.ph as isize;
                    if ih < 0 || ih >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[ih as usize * g.w..][..g.w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if lo >= hi {
                        continue;
                    }
                    // First input column read: lo * s + kj - p >= 0 by construction.
                    let start = lo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (d, s) in dst[lo..hi]
                            .iter_mut()
                            .zip(src[start..].iter().step_by(g.sw))
                        {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns `off..off + P` of the patch-matrix gradient `col` (`K` rows of `ld` elements)
/// into one frame's input gradient `dx`.
fn col2im(g: &Geom, col: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
    let p = g.p();
    let (lo_w, hi_w): (Vec<usize>, Vec<usize>) = (0..g.kw)
        .map(|kj| valid_range(g.wo, kj, g.sw, g.pw, g.w))
        .unzip();
    for c in 0..g.ci {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &col[((c * g.kh + ki) * g.kw + kj) * ld + off..][..p];
                let (lo, hi) = (lo_w[kj], hi_w[kj]);
                for oh in 0..g.ho {
                    let ih = (oh * g.sh + ki) as isize - g.ph as isize;
                    if ih < 0 || ih >= g.h as isize || lo >= hi {
                        continue;
                    }
                    let src = &row[oh * g.wo + lo..oh * g.wo + hi];
                    let dst = &mut plane[ih as usize * g.w..][..g.w];
                    let start = lo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        for (d, s) in dst[start..start + (hi - lo)].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst[start..].iter_mut().step_by(g.sw).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// A matrix operand: base slice and (row, column) strides in elements.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `dst (m x n, row-major) = [dst +] a (m x k) * b (k x n)`, single-threaded unless `parallel`.
///
/// Checks that every element the strides address lies inside the slices, which is what makes
/// the `gemm::gemm` call sound.
#[allow(clippy::too_many_arguments)]
fn sgemm(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat, acc: bool, parallel: bool) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(dst.len() > last(m, n, n, 1), "sgemm: dst too small");
    if k == 0 {
        if !acc {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        a.data.len() > last(m, k, a.rs, a.cs),
        "sgemm: lhs too small"
    );
    assert!(
        b.data.len() > last(k, n, b.rs, b.cs),
        "sgemm: rhs too small"
    );
    let parallelism = if parallel && m * n * k >= 128 * 128 * 128 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every addressed element of `dst`, `a` and `b` inside their
    // slices; `dst` is borrowed mutably, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Frames multiplied together in one GEMM: enough that the GEMM has at least `MIN_COLS`
/// columns (layer4 of ResNet-18 at 224 px has 7 x 7 = 49 positions per frame, too few for the
/// GEMM's blocking on their own), one when a frame alone has that many, and never so many that a
/// group's patch matrix exceeds `MAX_GROUP_ELEMS` (4 MiB of f32 per thread).
fn group_size(g: &Geom) -> usize {
    const MIN_COLS: usize = 512;
    const MAX_GROUP_ELEMS: usize = 1 << 20;
    let per_frame = (g.k() * g.p()).max(1);
    MIN_COLS
        .div_ceil(g.p().max(1))
        .min(MAX_GROUP_ELEMS / per_frame)
        .max(1)
}

/// Runs `work(a_frames, b_frames, parallel)` over the frames: one contiguous chunk of frames
/// per rayon thread (each running single-threaded GEMMs), or all frames at once with
/// multi-threaded GEMMs when there are fewer frames than threads. `a` has `la` elements per
/// frame, `b` `lb`.
fn over_chunks(
    n: usize,
    a: &[f32],
    la: usize,
    b: &mut [f32],
    lb: usize,
    scratch: &mut [Scratch],
    work: impl Fn(&[f32], &mut [f32], bool, &mut Scratch) + Sync,
) {
    let chunks = n_chunks(n);
    if chunks > 1 {
        let per = n.div_ceil(chunks);
        b.par_chunks_mut(per * lb)
            .zip(a.par_chunks(per * la))
            .zip(scratch.par_iter_mut())
            .for_each(|((bs, as_), sc)| work(as_, bs, false, sc));
    } else if let Some(sc) = scratch.first_mut() {
        work(a, b, true, sc);
    }
}

/// Chunks of frames [`over_chunks`] forms: one per rayon thread, or one in all (with
/// multi-threaded GEMMs) when there are fewer frames than threads.
fn n_chunks(n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if n >= threads && threads > 1 {
        n.div_ceil(n.div_ceil(threads))
    } else {
        1
    }
}

/// Scratch space of one chunk of frames: the group's patch matrix, a gathered or result matrix,
/// and (weight gradient) the chunk's partial sum.
struct Scratch {
    col: Vec<f32>,
    aux: Vec<f32>,
    dw: Vec<f32>,
}

/// One [`Scratch`] per chunk, with room for the largest frame group, allocated here on the
/// calling thread (reserved, not written). Buffers allocated and freed on the rayon threads stay
/// in those threads' malloc arenas, which raised the process's peak memory by several percent.
fn scratch(g: &Geom, dw: bool) -> Vec<Scratch> {
    let cols = group_size(g).min(g.n.max(1)) * g.p();
    (0..n_chunks(g.n))
        .map(|_| Scratch {
            col: Vec::with_capacity(g.k() * cols),
            aux: Vec::with_capacity(g.co * cols),
            dw: if dw {
                vec![0.0; g.co * g.k()]
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// The output gradient of `m` frames (`[m, C, P]`) as one `[C, m P]` matrix: the frame itself
/// when `m == 1`, else gathered into `buf`.
fn frames_matrix<'a>(
    dy: &'a [f32],
    c: usize,
    p: usize,
    m: usize,
    buf: &'a mut Vec<f32>,
) -> Mat<'a> {
    if m == 1 {
        return Mat {
            data: dy,
            rs: p,
            cs: 1,
        };
    }
    gather_frames(dy, c, p, m, buf);
    Mat {
        data: buf.as_slice(),
        rs: m * p,
        cs: 1,
    }
}

/// Copies frames' `[C, P]` blocks side by side into `dst` (`C` rows of `m P`).
fn gather_frames(src: &[f32], c: usize, p: usize, m: usize, dst: &mut Vec<f32>) {
    dst.resize(c * m * p, 0.0);
    for f in 0..m {
        for ch in 0..c {
            dst[ch * m * p + f * p..][..p].copy_from_slice(&src[(f * c + ch) * p..][..p]);
        }
    }
}

/// Forward pass: `x` `[N, C_in, H, W]`, `w` `[C_out, C_in, kh, kw]` -> `[N, C_out, Ho, Wo]`.
fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (k, p, co) = (g.k(), g.p(), g.co);
    let (lx, ly) = (g.in_frame(), g.out_frame());
    let mut out = vec![0.0f32; g.n * ly];
    let wm = Mat {
        data: w,
        rs: k,
        cs: 1,
    };
    let mut sc = scratch(g, false);
    over_chunks(g.n, x, lx, &mut out, ly, &mut sc, |xs, ys, parallel, sc| {
        let Scratch { col, aux: res, .. } = sc;
        let frames = xs.len() / lx;
        let gs = group_size(g);
        for start in (0..frames).step_by(gs) {
            let m = gs.min(frames - start);
            let xg = &xs[start * lx..(start + m) * lx];
            let yg = &mut ys[start * ly..(start + m) * ly];
            if m == 1 {
                let patches: &[f32] = if g.pointwise() {
                    xg
                } else {
                    col.resize(k * p, 0.0);
                    im2col(g, xg, col, p, 0);
                    col.as_slice()
                };
                sgemm(
                    yg,
                    co,
                    p,
                    k,
                    wm,
                    Mat {
                        data: patches,
                        rs: p,
                        cs: 1,
                    },
                    false,
                    parallel,
                );
            } else {
                let cols = m * p;
                col.resize(k * cols, 0.0);
                for (f, xf) in xg.chunks(lx).enumerate() {
                    im2col(g, xf, col, cols, f * p);
                }
                res.resize(co * cols, 0.0);
                let cm = Mat {
                    data: col.as_slice(),
                    rs: cols,
                    cs: 1,
                };
                sgemm(res, co, cols, k, wm, cm, false, parallel);
                for (f, yf) in yg.chunks_mut(ly).enumerate() {
                    for (ch, row) in yf.chunks_mut(p).enumerate() {
                        row.copy_from_slice(&res[ch * cols + f * p..][..p]);
                    }
                }
            }
            if let Some(b) = bias {
                for yf in yg.chunks_mut(ly) {
                    for (row, bv) in yf.chunks_mut(p).zip(b) {
                        row.iter_mut().for_each(|v| *v += *bv);
                    }
                }
            }
        }
    });
    out
}

/// Input gradient: `dx[f] = col2im(W^T dy[f])`.
fn backward_x(g: &Geom, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, co) = (g.k(), g.p(), g.co);
    let (lx, ly) = (g.in_frame(), g.out_frame());
    let mut dx = vec![0.0f32; g.n * lx];
    let wt = Mat {
        data: w,
        rs: 1,
        cs: k,
    };
    let mut sc = scratch(g, false);
    over_chunks(
        g.n,
        dy,
        ly,
        &mut dx,
        lx,
        &mut sc,
        |dys, dxs, parallel, sc| {
            let Scratch { col, aux: dyg, .. } = sc;
            let frames = dys.len() / ly;
            let gs = group_size(g);
            for start in (0..frames).step_by(gs) {
                let m = gs.min(frames - start);
                let dy_g = &dys[start * ly..(start + m) * ly];
                let dx_g = &mut dxs[start * lx..(start + m) * lx];
                if m == 1 && g.pointwise() {
                    sgemm(
                        dx_g,
                        k,
                        p,
                        co,
                        wt,
                        Mat {
                            data: dy_g,
                            rs: p,
                            cs: 1,
                        },
                        false,
                        parallel,
                    );
                    continue;
                }
                let cols = m * p;
                let dym = frames_matrix(dy_g, co, p, m, dyg);
                col.resize(k * cols, 0.0);
                sgemm(col, k, cols, co, wt, dym, false, parallel);
                for (f, dxf) in dx_g.chunks_mut(lx).enumerate() {
                    col2im(g, col, cols, f * p, dxf);
                }
            }
        },
    );
    dx
}

/// Weight gradient: `dW = sum_f dy[f] col(x[f])^T`, `[C_out, C_in, kh, kw]`.
fn backward_w(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, co) = (g.k(), g.p(), g.co);
    let (lx, ly) = (g.in_frame(), g.out_frame());
    let mut sc = scratch(g, true);
    over_chunks_ro(g.n, x, lx, dy, ly, &mut sc, |xs, dys, parallel, sc| {
        let Scratch { col, aux: dyg, dw } = sc;
        let frames = xs.len() / lx;
        let gs = group_size(g);
        let mut first = true;
        for start in (0..frames).step_by(gs) {
            let m = gs.min(frames - start);
            let x_g = &xs[start * lx..(start + m) * lx];
            let dy_g = &dys[start * ly..(start + m) * ly];
            let cols = m * p;
            let patches: &[f32] = if m == 1 && g.pointwise() {
                x_g
            } else {
                col.resize(k * cols, 0.0);
                for (f, xf) in x_g.chunks(lx).enumerate() {
                    im2col(g, xf, col, cols, f * p);
                }
                col.as_slice()
            };
            let dym = frames_matrix(dy_g, co, p, m, dyg);
            let ct = Mat {
                data: patches,
                rs: 1,
                cs: cols,
            };
            sgemm(dw, co, k, cols, dym, ct, !first, parallel);
            first = false;
        }
    });
    let mut it = sc.into_iter().map(|s| s.dw);
    let mut dw = it.next().unwrap_or_else(|| vec![0.0; co * k]);
    for part in it {
        dw.iter_mut().zip(&part).for_each(|(a, b)| *a += *b);
    }
    dw
}

/// [`over_chunks`] for two read-only operands (`a` with `la` elements per frame, `b` with `lb`).
fn over_chunks_ro(
    n: usize,
    a: &[f32],
    la: usize,
    b: &[f32],
    lb: usize,
    scratch: &mut [Scratch],
    work: impl Fn(&[f32], &[f32], bool, &mut Scratch) + Sync,
) {
    let chunks = n_chunks(n);
    if chunks > 1 {
        let per = n.div_ceil(chunks);
        a.par_chunks(per * la)
            .zip(b.par_chunks(per * lb))
            .zip(scratch.par_iter_mut())
            .for_each(|((as_, bs), sc)| work(as_, bs, false, sc));
    } else if let Some(sc) = scratch.first_mut() {
        work(a, b, true, sc);
    }
}

/// Bias gradient: the sum of `dy` over frames and positions, per output channel.
fn backward_b(g: &Geom, dy: &[f32]) -> Vec<f32> {
    let mut db = vec![0.0f32; g.co];
    for dyf in dy.chunks(g.out_frame()) {
        for (acc, row) in db.iter_mut().zip(dyf.chunks(g.p())) {
            *acc += row.iter().sum::<f32>();
        }
    }
    db
}

pub(crate) fn flex_f32(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

/// The contiguous f32 storage of a flex tensor (copied when it is a strided view).
pub(crate) fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

pub(crate) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fastconv: a contiguous f32 tensor (checked by the caller)")
}

fn flex_forward(g: &Geom, x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>) -> FlexTensor {
    let (x, w) = (contiguous(x), contiguous(w));
    let b = b.map(contiguous);
    let out = forward(g, slice(&x), slice(&w), b.as_ref().map(slice));
    flex_f32(out, &[g.n, g.co, g.ho, g.wo])
}

/// State of the autodiff node: the checkpointed input and weight, the geometry.
type State = (NodeId, NodeId, Geom);

#[derive(Debug)]
struct ConvNoBias;

#[derive(Debug)]
struct ConvWithBias;

fn grads_xw(
    g: &Geom,
    x: FlexTensor,
    w: FlexTensor,
    dy: &FlexTensor,
    want_x: bool,
    want_w: bool,
) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let (x, w) = (contiguous(&x), contiguous(&w));
    let dxv = want_x.then(|| flex_f32(backward_x(g, slice(&w), slice(dy)), &[g.n, g.ci, g.h, g.w]));
    let dwv = want_w.then(|| {
        flex_f32(
            backward_w(g, slice(&x), slice(dy)),
            &[g.co, g.ci, g.kh, g.kw],
        )
    });
    (dxv, dwv)
}

impl Backward<Flex, 2> for ConvNoBias {
    type State = State;

    fn backward(self, ops: Ops<State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (xs, ws, g) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(xs);
        let w = checkpointer.retrieve_node_output::<FlexTensor>(ws);
        let (dx, dw) = grads_xw(&g, x, w, &dy, node_x.is_some(), node_w.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, dw);
        }
    }
}

impl Backward<Flex, 3> for ConvWithBias {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (xs, ws, g) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(xs);
        let w = checkpointer.retrieve_node_output::<FlexTensor>(ws);
        let (dx, dw) = grads_xw(&g, x, w, &dy, node_x.is_some(), node_w.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, dw);
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex_f32(backward_b(&g, slice(&dy)), &[g.co]));
        }
    }
}

type AdTensor = FloatTensor<Autodiff<Flex>>;

fn autodiff_forward(g: Geom, x: AdTensor, w: AdTensor, b: Option<AdTensor>) -> AdTensor {
    match b {
        None => {
            match Backward::<Flex, 2>::prepare::<NoCheckpointing>(ConvNoBias, [x.node(), w.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let xs = prep.checkpoint(&x);
                    let ws = prep.checkpoint(&w);
                    let out = flex_forward(&g, x.primitive(), w.primitive(), None);
                    prep.finish((xs, ws, g), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(flex_forward(&g, x.primitive(), w.primitive(), None))
                }
            }
        }
        Some(b) => match Backward::<Flex, 3>::prepare::<NoCheckpointing>(
            ConvWithBias,
            [x.node(), w.node(), b.node()],
        )
        .compute_bound()
        .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                let ws = prep.checkpoint(&w);
                let out = flex_forward(&g, x.primitive(), w.primitive(), Some(b.primitive()));
                prep.finish((xs, ws, g), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_forward(
                &g,
                x.primitive(),
                w.primitive(),
                Some(b.primitive()),
            )),
        },
    }
}

/// `conv2d(x, weight, bias)` with the given stride and symmetric padding (dilation 1, one
/// group): this module's kernels on the flex backend in f32, ATen's through
/// [`crate::torchops`] on the LibTorch autodiff backend (`--features tch`), burn's `conv2d`
/// otherwise.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    // On burn's LibTorch backend: ATen's convolution and its backward (`crate::torchops`).
    #[cfg(feature = "tch")]
    if let Some(y) = crate::torchops::try_conv2d(&x, &weight, bias.as_ref(), stride, padding) {
        return y;
    }
    let all_f32 = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    let geom = Geom::new(x.dims(), weight.dims(), stride, padding);
    if let (true, Some(g)) = (all_f32, geom) {
        if g.n > 0 && g.co > 0 {
            // With autodiff.
            let ad = (
                x.clone().try_into_primitive::<Autodiff<Flex>>(),
                weight.clone().try_into_primitive::<Autodiff<Flex>>(),
                bias.clone()
                    .map(|b| b.try_into_primitive::<Autodiff<Flex>>())
                    .transpose(),
            );
            if let (Ok(xp), Ok(wp), Ok(bp)) = ad {
                count_fast_call();
                return Tensor::from_primitive::<Autodiff<Flex>>(autodiff_forward(g, xp, wp, bp));
            }
            // Inference.
            let plain = (
                x.clone().try_into_primitive::<Flex>(),
                weight.clone().try_into_primitive::<Flex>(),
                bias.clone()
                    .map(|b| b.try_into_primitive::<Flex>())
                    .transpose(),
            );
            if let (Ok(xp), Ok(wp), Ok(bp)) = plain {
                count_fast_call();
                return Tensor::from_primitive::<Flex>(flex_forward(&g, &xp, &wp, bp.as_ref()));
            }
        }
    }
    burn::tensor::module::conv2d(
        x,
        weight,
        bias,
        ConvOptions::new(stride, padding, [1, 1], 1),
    )
}

/// The two backward passes of [`conv2d`] on their own, without autodiff: the gradients with
/// respect to the input and the weight, given the gradient of the output. This module's kernels
/// on the flex backend in f32, burn's `conv2d_x_backward` / `conv2d_weight_backward` otherwise.
/// (The autodiff path of [`conv2d`] uses the same kernels; this entry point exists for the
/// per-operation benchmark and the tests.)
pub fn conv2d_backward(
    x: Tensor<4>,
    weight: Tensor<4>,
    output_grad: Tensor<4>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> (Tensor<4>, Tensor<4>) {
    let geom = Geom::new(x.dims(), weight.dims(), stride, padding)
        .filter(|g| output_grad.dims() == [g.n, g.co, g.ho, g.wo]);
    let all_f32 = [&x, &weight, &output_grad]
        .iter()
        .all(|t| t.dtype() == DType::F32);
    if let (true, Some(g)) = (all_f32, geom) {
        let plain = (
            x.clone().try_into_primitive::<Flex>(),
            weight.clone().try_into_primitive::<Flex>(),
            output_grad.clone().try_into_primitive::<Flex>(),
        );
        if let (Ok(xp), Ok(wp), Ok(dyp)) = plain {
            let dy = contiguous(&dyp);
            let (dx, dw) = grads_xw(&g, xp, wp, &dy, true, true);
            if let (Some(dx), Some(dw)) = (dx, dw) {
                count_fast_call();
                return (
                    Tensor::from_primitive::<Flex>(dx),
                    Tensor::from_primitive::<Flex>(dw),
                );
            }
        }
    }
    // burn's own decomposition: the input gradient is the transposed convolution of the output
    // gradient (with the output padding that restores the input size).
    let [_, _, h, w] = x.dims();
    let [_, _, kh, kw] = weight.dims();
    let pad_out = [
        (h + 2 * padding[0]).saturating_sub(kh) % stride[0].max(1),
        (w + 2 * padding[1]).saturating_sub(kw) % stride[1].max(1),
    ];
    let dx = burn::tensor::module::conv_transpose2d(
        output_grad.clone(),
        weight.clone(),
        None,
        ConvTransposeOptions::new(stride, padding, pad_out, [1, 1], 1),
    );
    let options = ConvOptions::new(stride, padding, [1, 1], 1);
    let dw = burn::tensor::module::conv2d_weight_backward(x, weight, output_grad, options);
    (dx, dw)
}

/// Whether [`conv2d_forward`] uses this module: yes unless the environment variable
/// `LOFI_FASTCONV` is `0` when it is first asked (an escape hatch, and what lets the benchmark
/// compare both paths in one binary).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("LOFI_FASTCONV").map_or(true, |v| v.trim() != "0"))
}

/// [`Conv2d::forward`] through [`conv2d`] when the layer is in this module's scope (one group,
/// dilation 1, symmetric explicit or no padding) and [`enabled`], through burn's own forward
/// otherwise.
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !enabled() {
        return conv.forward(x);
    }
    let pad = match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => Some([t, l]),
        _ => None,
    };
    match pad {
        Some(pad) if conv.groups == 1 && conv.dilation == [1, 1] => conv2d(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            conv.stride,
            pad,
        ),
        _ => conv.forward(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg_vec, max_rel_diff};
    use burn::tensor::{Device, TensorData};

    fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for out in 1..6 {
            for k in 0..4 {
                for s in 1..4 {
                    for p in 0..4 {
                        for len in 1..8 {
                            let ok: Vec<usize> = (0..out)
                                .filter(|&o| {
                                    let i = (o * s + k) as isize - p as isize;
                                    i >= 0 && i < len as isize
                                })
                                .collect();
                            let (lo, hi) = valid_range(out, k, s, p, len);
                            let got: Vec<usize> = (lo..hi).collect();
                            // The valid set is an interval.
                            assert_eq!(got, ok, "out {out} k {k} s {s} p {p} len {len}");
                        }
                    }
                }
            }
        }
    }

    /// Forward and all three gradients against burn's conv2d, with and without autodiff, for
    /// the kernel shapes of TSM-ResNet (7x7/2 pad 3, 3x3/1 and /2 pad 1, 1x1/1 and /2) and odd
    /// sizes, with more and fewer frames than threads.
    #[test]
    fn matches_burn_conv2d_and_its_gradients() {
        let device = Device::flex().autodiff();
        // Frames are multiplied in groups of `group_size` (512 / positions): the cases cover
        // one frame per GEMM (24 x 24 positions), groups of several frames, pointwise kernels
        // alone and in groups, and a single frame (multi-threaded GEMMs).
        let cases: [([usize; 4], usize, usize, usize, usize, bool); 9] = [
            ([3, 3, 17, 15], 5, 7, 2, 3, false),
            ([4, 6, 9, 11], 7, 3, 1, 1, false),
            ([5, 6, 9, 10], 4, 3, 2, 1, true),
            ([2, 5, 6, 7], 3, 1, 1, 0, true),
            ([3, 8, 7, 9], 6, 1, 2, 0, false),
            ([1, 4, 5, 5], 3, 3, 1, 1, true),
            ([2, 3, 4, 4], 2, 3, 3, 0, false),
            ([6, 5, 6, 7], 3, 1, 1, 0, true),
            ([3, 2, 24, 24], 3, 3, 1, 1, false),
        ];
        for (i, (xs, co, k, s, p, with_bias)) in cases.into_iter().enumerate() {
            let ws = [co, xs[1], k, k];
            let xv = lcg_vec(xs.iter().product(), 10 + i as u64);
            let wv = lcg_vec(ws.iter().product(), 20 + i as u64);
            let bv = lcg_vec(co, 30 + i as u64);
            let run = |fast: bool| {
                let x = tensor(xv.clone(), xs, &device).require_grad();
                let w = tensor(wv.clone(), ws, &device).require_grad();
                let b = with_bias.then(|| tensor(bv.clone(), [co], &device).require_grad());
                let y = if fast {
                    conv2d(x.clone(), w.clone(), b.clone(), [s, s], [p, p])
                } else {
                    burn::tensor::module::conv2d(
                        x.clone(),
                        w.clone(),
                        b.clone(),
                        ConvOptions::new([s, s], [p, p], [1, 1], 1),
                    )
                };
                let [_, _, ho, wo] = y.dims();
                let r = tensor(
                    lcg_vec(xs[0] * co * ho * wo, 40 + i as u64),
                    [xs[0], co, ho, wo],
                    &device,
                );
                let grads = (y.clone() * r).sum().backward();
                let gx = vals(x.grad(&grads).expect("x grad"));
                let gw = vals(w.grad(&grads).expect("w grad"));
                let gb = b.map(|b| vals(b.grad(&grads).expect("b grad")));
                (vals(y), gx, gw, gb)
            };
            let (y0, gx0, gw0, gb0) = run(false);
            let before = fast_calls();
            let (y1, gx1, gw1, gb1) = run(true);
            assert_eq!(fast_calls(), before + 1, "the autodiff fast path ran");
            let what = format!("case {i}: x {xs:?} w {ws:?} s {s} p {p}");
            assert!(max_rel_diff(&y1, &y0) < 1e-5, "forward, {what}");
            assert!(max_rel_diff(&gx1, &gx0) < 1e-5, "input grad, {what}");
            assert!(max_rel_diff(&gw1, &gw0) < 1e-5, "weight grad, {what}");
            if let (Some(a), Some(b)) = (gb1, gb0) {
                assert!(max_rel_diff(&a, &b) < 1e-5, "bias grad, {what}");
            }
        }
    }

    #[test]
    fn inference_matches_and_other_cases_fall_back() {
        let device = Device::flex();
        let xs = [3, 4, 8, 8];
        let x = tensor(lcg_vec(3 * 4 * 64, 1), xs, &device);
        let w = tensor(lcg_vec(5 * 4 * 9, 2), [5, 4, 3, 3], &device);
        let before = fast_calls();
        let a = vals(conv2d(x.clone(), w.clone(), None, [1, 1], [1, 1]));
        assert_eq!(fast_calls(), before + 1, "the inference fast path ran");
        let b = vals(burn::tensor::module::conv2d(
            x.clone(),
            w.clone(),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ));
        assert!(max_rel_diff(&a, &b) < 1e-5);
        // The standalone backward agrees with burn's.
        let dy = tensor(lcg_vec(3 * 5 * 64, 3), [3, 5, 8, 8], &device);
        let (dx, dw) = conv2d_backward(x.clone(), w.clone(), dy.clone(), [1, 1], [1, 1]);
        assert_eq!(
            fast_calls(),
            before + 2,
            "the standalone backward fast path ran"
        );
        let adev = Device::flex().autodiff();
        let xa = tensor(lcg_vec(3 * 4 * 64, 1), xs, &adev).require_grad();
        let wa = tensor(lcg_vec(5 * 4 * 9, 2), [5, 4, 3, 3], &adev).require_grad();
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let r = tensor(lcg_vec(3 * 5 * 64, 3), [3, 5, 8, 8], &adev);
        let g = (burn::tensor::module::conv2d(xa.clone(), wa.clone(), None, opts) * r)
            .sum()
            .backward();
        let (gx, gw) = (xa.grad(&g).expect("x grad"), wa.grad(&g).expect("w grad"));
        assert!(max_rel_diff(&vals(dx), &vals(gx)) < 1e-5);
        assert!(max_rel_diff(&vals(dw), &vals(gw)) < 1e-5);
        // bf16 goes to burn's path (and still works).
        let before = fast_calls();
        let y = conv2d(
            x.cast(DType::BF16),
            w.cast(DType::BF16),
            None,
            [1, 1],
            [1, 1],
        );
        assert_eq!(y.dims(), [3, 5, 8, 8]);
        assert_eq!(fast_calls(), before, "bf16 took burn's path");
    }
}
