"""Load benchmark for the web demo: N requests from K concurrent clients
against a real server in this process; prints latency percentiles and the
server's resident memory over time.

    python benchmarks/app_load.py --requests 1000 --clients 8
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def trimmed_rss_mb() -> float:
    """RSS after glibc hands freed heap pages back: what is really still in use."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return rss_mb()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--port", type=int, default=7899)
    args = p.parse_args()

    from gradio_client import Client, handle_file

    from speechlstm import Recognizer
    from speechlstm.webui import launch

    demo = launch(Recognizer.from_checkpoint(device="cpu"), port=args.port, block=False)
    url = f"http://127.0.0.1:{args.port}/"
    clips = sorted(EXAMPLES.glob("*.wav"))
    clients = [Client(url, verbose=False) for _ in range(args.clients)]
    expected = [c.name.split("_")[0] for c in clips]
    lat, wrong, marks = [], 0, []

    def one(i: int) -> tuple[float, bool]:
        t = time.perf_counter()
        out = clients[i % args.clients].predict(handle_file(str(clips[i % len(clips)])), api_name="/classify")
        return time.perf_counter() - t, out[0]["label"] == expected[i % len(clips)]

    start_rss, t0 = rss_mb(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        for i, (seconds, ok) in enumerate(pool.map(one, range(args.requests))):
            lat.append(seconds)
            wrong += not ok
            if (i + 1) % max(1, args.requests // 5) == 0:
                marks.append((i + 1, rss_mb(), trimmed_rss_mb()))
    wall = time.perf_counter() - t0
    demo.close()
    ms = 1000 * np.array(lat)
    print(f"{args.requests} requests, {args.clients} concurrent clients: {wrong} wrong, "
          f"{args.requests / wall:.1f} requests/s")
    print(f"latency ms: median {np.median(ms):.0f}, p95 {np.percentile(ms, 95):.0f}, max {ms.max():.0f}")
    print(f"server RSS MB: start {start_rss:.0f}, " + ", ".join(
        f"after {n}: {m:.0f} ({t:.0f} after malloc_trim)" for n, m, t in marks))


if __name__ == "__main__":
    main()
