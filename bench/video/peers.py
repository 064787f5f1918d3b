"""Python peers for the lofi-video sampling benchmark: decord and PyAV on the same files.

Same task as `sample_throughput`: open a video, take 100 snippets x 1 frame (frame at the centre
of each of 100 equal segments of the video), resize the short side to 224 and centre-crop to
224x224 RGB uint8. One decoding thread per tool. Prints RESULT/RSS lines in the bench's format.

Usage: peers.py {decord|pyav} sample FILE W H REPEATS
       peers.py {decord|pyav} many DIR W H COUNT
"""

import os
import statistics
import sys
import time

import numpy as np

L, S = 100, 224


def rss_mib(field="VmRSS:"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return 0.0


def resized_size(w, h):
    if w <= h:
        return S, max(S, round(h * S / w))
    return max(S, round(w * S / h)), S


def crop(frames):
    h, w = frames.shape[-3], frames.shape[-2]
    y0, x0 = (h - S) // 2, (w - S) // 2
    return frames[..., y0:y0 + S, x0:x0 + S, :]


def sample_decord(path, w, h):
    import decord

    rw, rh = resized_size(w, h)
    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=rw, height=rh, num_threads=1)
    n = len(vr)
    # Frame whose interval contains each segment centre (CFR: index = floor(t * fps)).
    fps = vr.get_avg_fps()
    duration = n / fps
    idx = [min(n - 1, int(((i + 0.5) * duration / L) * fps)) for i in range(L)]
    frames = vr.get_batch(idx).asnumpy()
    return np.ascontiguousarray(crop(frames))


def sample_pyav(path, w, h):
    import av

    rw, rh = resized_size(w, h)
    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        tb = float(stream.time_base)
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / 1e6)
        targets = [(i + 0.5) * duration / L for i in range(L)]
        k = 0
        prev = None
        # Dense targets: one sequential pass, keeping the frame whose interval holds each target.
        for frame in container.decode(stream):
            t = frame.pts * tb
            while k < L and t > targets[k] and prev is not None:
                out.append(prev.to_ndarray(width=rw, height=rh, format="rgb24"))
                k += 1
            if k >= L:
                break
            prev = frame
        while k < L and prev is not None:
            out.append(prev.to_ndarray(width=rw, height=rh, format="rgb24"))
            k += 1
    return np.ascontiguousarray(crop(np.stack(out)))


def main():
    tool, mode, target, w, h, n = sys.argv[1:7]
    w, h, n = int(w), int(h), int(n)
    fn = {"decord": sample_decord, "pyav": sample_pyav}[tool]
    if mode == "sample":
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            clip = fn(target, w, h)
            times.append(time.perf_counter() - t0)
        assert clip.shape == (L, S, S, 3), clip.shape
        med = statistics.median(times)
        print(f"RESULT tool={tool} file={target} frames={L} median_s={med:.4f} fps={L / med:.1f} "
              f"checksum={int(clip.astype(np.uint64).sum())}")
    else:
        files = sorted(os.path.join(target, f) for f in os.listdir(target) if f.endswith(".mp4"))
        t0 = time.perf_counter()
        for i in range(n):
            clip = fn(files[i % len(files)], w, h)
            assert clip.shape == (L, S, S, 3)
            done = i + 1
            if done in (10, 100, 250, 500, n):
                print(f"RSS tool={tool} videos={done} rss_mib={rss_mib():.1f}", flush=True)
        secs = time.perf_counter() - t0
        print(f"RESULT tool={tool} many={n} failed=0 seconds={secs:.2f} fps={n * L / secs:.1f} "
              f"peak_rss_mib={rss_mib('VmHWM:'):.1f}")


if __name__ == "__main__":
    main()
