#!/usr/bin/env python3
"""What a burn GPU process spent on kernels, read from cubecl's on-disk environment database.

Why: on a GPU, burn compiles every kernel at its first launch (CUDA: CUDA C++ through NVRTC,
then the driver's PTX JIT) and autotunes matmuls, convolutions and reductions, compiling each
candidate it benchmarks. lofi keeps cubecl's database in its kernel cache folder
(`LOFI_KERNEL_CACHE`, `lofi_model::kernel_cache`), and cubecl records there, per kernel, how it
was obtained (compiled, loaded from the cache, re-keyed) and how long that took, and every
autotune decision. This script turns those records into numbers: kernels compiled and loaded,
seconds spent, the kernel families that cost most, and the autotune keys with their candidates.

Usage: kernel_records.py DB [--json] [--top N] [--markdown-to FILE [--heading TEXT]]
  DB      the `default.db` in the kernel cache folder (or the folder itself)
  --json  one JSON object on stdout instead of the Markdown summary
  --markdown-to FILE  also append the Markdown summary to FILE
Standard library only (sqlite3 and a small CBOR reader): it runs on the device image as is.
"""
import json
import os
import sqlite3
import struct
import sys
from collections import defaultdict


class CborError(ValueError):
    pass


def cbor_decode(data):
    """The first CBOR item of `data` (RFC 8949: the major types cubecl's records use)."""
    value, end = _item(data, 0)
    return value


def _head(data, i):
    if i >= len(data):
        raise CborError("truncated CBOR item")
    b = data[i]
    major, info = b >> 5, b & 31
    i += 1
    if info < 24:
        return major, info, info, i
    sizes = {24: 1, 25: 2, 26: 4, 27: 8}
    if info in sizes:
        n = sizes[info]
        if i + n > len(data):
            raise CborError("truncated CBOR length")
        return major, info, int.from_bytes(data[i:i + n], "big"), i + n
    if info == 31:
        return major, info, None, i
    raise CborError(f"reserved CBOR additional information {info}")


def _item(data, i):
    major, info, arg, i = _head(data, i)
    if major == 0:
        return arg, i
    if major == 1:
        return -1 - arg, i
    if major in (2, 3):
        if arg is None:  # indefinite: a sequence of definite chunks up to 0xff
            chunks = []
            while data[i] != 0xFF:
                chunk, i = _item(data, i)
                chunks.append(chunk)
            joined = (b"" if major == 2 else "").join(chunks)
            return joined, i + 1
        raw = bytes(data[i:i + arg])
        if len(raw) != arg:
            raise CborError("truncated CBOR string")
        return (raw if major == 2 else raw.decode("utf-8", "replace")), i + arg
    if major == 4:
        out = []
        if arg is None:
            while data[i] != 0xFF:
                v, i = _item(data, i)
                out.append(v)
            return out, i + 1
        for _ in range(arg):
            v, i = _item(data, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        count = arg
        while (count is None and data[i] != 0xFF) or (count is not None and count > 0):
            k, i = _item(data, i)
            v, i = _item(data, i)
            out[k if not isinstance(k, (list, dict)) else json.dumps(k, default=str)] = v
            if count is not None:
                count -= 1
        return out, (i + 1 if count is None else i)
    if major == 6:  # tag: 2/3 are big integers, everything else is its content
        v, i = _item(data, i)
        if arg in (2, 3) and isinstance(v, bytes):
            n = int.from_bytes(v, "big")
            return (n if arg == 2 else -1 - n), i
        return v, i
    # major 7: simple values and floats
    if info == 20:
        return False, i
    if info == 21:
        return True, i
    if info in (22, 23):
        return None, i
    if info == 25:
        return struct.unpack(">e", arg.to_bytes(2, "big"))[0], i
    if info == 26:
        return struct.unpack(">f", arg.to_bytes(4, "big"))[0], i
    if info == 27:
        return struct.unpack(">d", arg.to_bytes(8, "big"))[0], i
    return arg, i


def seconds(d):
    """A Rust `Duration` as cubecl serialises it ({secs, nanos}), in seconds."""
    if isinstance(d, dict):
        return d.get("secs", 0) + d.get("nanos", 0) / 1e9
    return float(d or 0)


def family(kernel):
    """A kernel's family: its type path without generic arguments, last two segments."""
    base = kernel.split("<", 1)[0]
    parts = base.split("::")
    return "::".join(parts[-2:]) if len(parts) > 1 else base


def read(db_path):
    if os.path.isdir(db_path):
        db_path = os.path.join(db_path, "default.db")
    if not os.path.isfile(db_path):
        raise SystemExit(f"kernel_records.py: {db_path}: no such database")
    # Read-only: a process still running may hold the database.
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT namespace, value FROM entries").fetchall()
    except sqlite3.DatabaseError as e:
        raise SystemExit(f"kernel_records.py: {db_path}: not a cubecl database ({e})")
    finally:
        con.close()
    compilations, autotune, sessions, artifacts, bad = [], [], {}, defaultdict(int), 0
    for namespace, value in rows:
        if namespace.startswith("records/") and namespace.endswith("/sessions"):
            try:
                rec = cbor_decode(value)
                sessions[rec.get("id")] = rec.get("started_unix_ms", 0)
            except (CborError, IndexError, AttributeError):
                bad += 1
            continue
        if namespace.startswith("records/"):
            try:
                rec = cbor_decode(value)
            except (CborError, IndexError):
                bad += 1
                continue
            body = rec.get("record", rec) if isinstance(rec, dict) else {}
            stamp = rec.get("stamp", {}) if isinstance(rec, dict) else {}
            entry = {"session": stamp.get("session"), "at_s": seconds(stamp.get("offset")), **body}
            if namespace.endswith("/compilation"):
                compilations.append(entry)
            elif namespace.endswith("/autotune"):
                autotune.append(entry)
        else:
            artifacts[namespace.split("/", 1)[0]] += 1
    return compilations, autotune, sessions, dict(artifacts), bad


def summarise(db_path, top=15):
    compilations, autotune, sessions, artifacts, bad = read(db_path)
    by_outcome = defaultdict(lambda: [0, 0.0])
    by_family = defaultdict(lambda: [0, 0.0, 0])
    for c in compilations:
        d = seconds(c.get("duration"))
        outcome = str(c.get("outcome", "?"))
        by_outcome[outcome][0] += 1
        by_outcome[outcome][1] += d
        f = by_family[family(str(c.get("kernel", "?")))]
        if outcome == "Compiled":
            f[0] += 1
            f[1] += d
        else:
            f[2] += 1
    last = max((c["at_s"] for c in compilations), default=0.0)
    families = sorted(by_family.items(), key=lambda kv: -kv[1][1])
    # Autotune: one record per key tuned, with every candidate's trial (its compilation
    # included: a candidate is compiled when it is first benchmarked) and the whole wall time.
    tune = defaultdict(lambda: {"keys": 0, "wall_s": 0.0, "trials": 0, "winners": defaultdict(int)})
    for a in autotune:
        t = tune[str(a.get("table", "?")).rsplit("/", 1)[-1]]
        t["keys"] += 1
        t["wall_s"] += seconds(a.get("wall"))
        trials = a.get("trials") or []
        t["trials"] += len(trials)
        w = a.get("winner")
        if isinstance(w, int) and 0 <= w < len(trials):
            t["winners"][str(trials[w].get("name", w))] += 1
    tune_keys = {
        k: {"keys": v["keys"], "wall_s": round(v["wall_s"], 3), "trials": v["trials"],
            "winners": dict(v["winners"])}
        for k, v in sorted(tune.items(), key=lambda kv: -kv[1]["wall_s"])
    }
    # Per process (cubecl's session), in the order they started: a cold run against a warm one.
    order = []
    per = {}
    for rec, kind in [(c, "c") for c in compilations] + [(a, "a") for a in autotune]:
        sid = rec.get("session")
        if sid not in per:
            order.append(sid)
            per[sid] = {"compiled": 0, "compile_s": 0.0, "loaded": 0, "load_s": 0.0,
                        "autotune_keys": 0, "autotune_s": 0.0, "last_record_s": 0.0}
        p = per[sid]
        p["last_record_s"] = max(p["last_record_s"], rec.get("at_s", 0.0))
        if kind == "a":
            p["autotune_keys"] += 1
            p["autotune_s"] += seconds(rec.get("wall"))
        elif rec.get("outcome") == "Compiled":
            p["compiled"] += 1
            p["compile_s"] += seconds(rec.get("duration"))
        else:
            p["loaded"] += 1
            p["load_s"] += seconds(rec.get("duration"))
    processes = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in per[sid].items()}
                 for sid in sorted(order, key=lambda sid: sessions.get(sid, 0))]
    return {
        "database": db_path,
        "processes": processes,
        "sessions": len(sessions),
        "kernels_compiled": by_outcome.get("Compiled", [0, 0.0])[0],
        "compile_s": round(by_outcome.get("Compiled", [0, 0.0])[1], 3),
        "kernels_loaded": by_outcome.get("Loaded", [0, 0.0])[0],
        "load_s": round(by_outcome.get("Loaded", [0, 0.0])[1], 3),
        "outcomes": {k: {"count": v[0], "seconds": round(v[1], 3)} for k, v in by_outcome.items()},
        "last_record_s": round(last, 3),
        "autotune_records": len(autotune),
        "autotune_wall_s": round(sum(v["wall_s"] for v in tune_keys.values()), 3),
        "autotune_by_kind": tune_keys,
        "stored_artifacts": artifacts,
        "unreadable_records": bad,
        "top_families": [
            {"family": k, "compiled": v[0], "compile_s": round(v[1], 3), "other": v[2]}
            for k, v in families[:top]
        ],
    }


def markdown(s):
    out = [
        f"Kernel records in `{s['database']}` ({s['sessions']} process(es)):",
        "",
        f"- compiled: {s['kernels_compiled']} kernels, {s['compile_s']:.1f} s "
        f"(mean {1000 * s['compile_s'] / max(1, s['kernels_compiled']):.0f} ms); loaded from the "
        f"cache: {s['kernels_loaded']} kernels, {s['load_s']:.1f} s",
        f"- last record {s['last_record_s']:.1f} s after its process started; "
        f"{s['autotune_records']} autotune records; artifacts stored: "
        + (", ".join(f"{k} {v}" for k, v in sorted(s["stored_artifacts"].items())) or "none"),
    ]
    if len(s["processes"]) > 1:
        for n, p in enumerate(s["processes"], 1):
            out.append(
                f"- process {n}: compiled {p['compiled']} ({p['compile_s']:.1f} s), loaded "
                f"{p['loaded']} ({p['load_s']:.1f} s), {p['autotune_keys']} autotune keys "
                f"({p['autotune_s']:.1f} s), last record at {p['last_record_s']:.1f} s")
    if s["unreadable_records"]:
        out.append(f"- {s['unreadable_records']} records could not be read")
    out += ["", "| kernel family | compiled | compile s | loaded or re-keyed |", "|---|---:|---:|---:|"]
    for f in s["top_families"]:
        out.append(f"| `{f['family']}` | {f['compiled']} | {f['compile_s']:.2f} | {f['other']} |")
    if s["autotune_by_kind"]:
        out += ["", f"Autotune: {s['autotune_records']} keys tuned in {s['autotune_wall_s']:.1f} s "
                "(each candidate's first trial includes its compilation):", "",
                "| tuned operation | keys | candidates tried | wall s | winners |", "|---|---:|---:|---:|---|"]
        for k, v in s["autotune_by_kind"].items():
            wins = ", ".join(f"{n} {c}" for n, c in sorted(v["winners"].items(), key=lambda kv: -kv[1]))
            out.append(f"| `{k}` | {v['keys']} | {v['trials']} | {v['wall_s']:.2f} | {wins} |")
    return "\n".join(out)


def main(argv):
    import argparse

    p = argparse.ArgumentParser(description="What a burn GPU process spent on kernels.")
    p.add_argument("db", help="cubecl's default.db in the kernel cache folder, or the folder")
    p.add_argument("--json", action="store_true", help="one JSON object instead of Markdown")
    p.add_argument("--top", type=int, default=15, help="kernel families listed (default 15)")
    p.add_argument("--markdown-to", metavar="FILE",
                   help="also append the Markdown summary to FILE (one read of the database for both)")
    p.add_argument("--heading", default="", help="a heading line above the appended Markdown")
    a = p.parse_args(argv)
    s = summarise(a.db, a.top)
    if a.markdown_to:
        with open(a.markdown_to, "a") as f:
            f.write((f"{a.heading}\n\n" if a.heading else "") + markdown(s) + "\n\n")
    print(json.dumps(s) if a.json else markdown(s))


if __name__ == "__main__":
    main(sys.argv[1:])
