"""Load benchmark for the web demo: N requests from K concurrent gradio_client
users against a real server started in its own process (`python app.py`), for
each path a user or program takes:

- ``api``: the lean JSON endpoint ``/predict`` (labels and scores, no figure);
- ``ui``: what the Clip tab's Recognize button runs: ``/classify`` (labels),
  then the waveform/MFCC figure;
- ``bad``: bad uploads through ``/predict`` (an empty file, random bytes, a truncated
  WAV header, a PNG and an MP4 header named .wav): each must come back as an error
  answer; its latency is how fast a user hears what is wrong (HTTP users only).

The users speak Gradio's HTTP API (upload, then one POST for the unqueued
``/predict``, as the README's curl example does; call and event stream for the
queued Clip tab) or, with ``--client gradio_client``, the Python client.
Reports requests/s, latency percentiles, the server's CPU time per request (its
process's user + system time, so the clients' own work is not counted), the
handler's own time (``server_ms`` of /predict) and the server's resident memory.

    python benchmarks/app_load.py --requests 1000 --clients 8
    python benchmarks/app_load.py --paths api --requests 2000 --clients 8 --json
    python benchmarks/app_load.py --paths bad --requests 200 --clients 1
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def start_server(port: int, checkpoint: str | None) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu"]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not answer within 180 s")


class HttpUser:
    """One user speaking Gradio's documented HTTP API (as the README's curl example
    does) over one keep-alive connection: upload, then call (one POST for the unqueued
    /predict; call and read the event stream for queued endpoints)."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=120)

    def predict(self, clip: Path, *args, api_name: str):
        with clip.open("rb") as f:
            uploaded = self.http.post("/upload", files={"files": (clip.name, f, "audio/wav")}).json()[0]
        data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, *args]
        name = api_name.strip("/")
        if name == "predict":  # not queued: one POST answers
            return self.http.post(f"/run/{name}", json={"data": data}).json()["data"][0]
        event = self.http.post(f"/call/{name}", json={"data": data}).json()["event_id"]
        kind = None
        with self.http.stream("GET", f"/call/{name}/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind in ("complete", "error"):
                    if kind == "error":
                        raise RuntimeError(f"{api_name}: {line[6:]}")
                    out = json.loads(line[6:])
                    return out[0] if len(out) == 1 else out
        raise RuntimeError(f"{api_name}: the event stream ended without a result")

    def rejected(self, clip: Path) -> bool:
        """Upload a bad file and call /predict: True when the answer is an error with a message."""
        with clip.open("rb") as f:
            uploaded = self.http.post("/upload", files={"files": (clip.name, f, "audio/wav")}).json()[0]
        r = self.http.post("/run/predict", json={"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, 5]})
        return r.status_code == 500 and bool(r.json().get("error"))


def bad_files(folder: Path) -> list[Path]:
    """Files a user might upload by mistake, each named .wav."""
    rng = np.random.default_rng(0)
    with (EXAMPLES / sorted(p.name for p in EXAMPLES.glob("*.wav"))[0]).open("rb") as f:
        header = f.read(30)
    contents = {"empty.wav": b"", "random.wav": rng.bytes(4000), "truncated.wav": header,
                "image.wav": b"\x89PNG\r\n\x1a\n" + rng.bytes(3000),
                "movie.wav": b"\x00\x00\x00\x18ftypmp42" + bytes(4000)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in contents]


class GradioClientUser:
    """One user through gradio_client (what a Python program would use)."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False)

    def predict(self, clip: Path, *args, api_name: str):
        from gradio_client import handle_file

        return self.client.predict(handle_file(str(clip)), *args, api_name=api_name)


def run_path(path: str, url: str, pid: int, requests: int, clients: int, client: str, scratch: Path) -> dict:
    if path == "bad" and client != "http":
        raise SystemExit("--paths bad speaks the HTTP API: use --client http")
    clips = bad_files(scratch) if path == "bad" else sorted(EXAMPLES.glob("*.wav"))
    expected = [c.name.split("_")[0] for c in clips]
    users = [(HttpUser if client == "http" else GradioClientUser)(url) for _ in range(clients)]

    def one(i: int) -> tuple[float, bool, float | None]:
        user, clip = users[i % clients], clips[i % len(clips)]
        t = time.perf_counter()
        if path == "bad":
            ok = user.rejected(clip)  # "wrong" below counts bad files that got no error answer
            return time.perf_counter() - t, ok, None
        if path == "api":
            out = user.predict(clip, 5, api_name="/predict")
            label, handler_ms = out["label"], out["server_ms"]
        else:
            label, handler_ms = user.predict(clip, api_name="/classify")[0]["label"], None
            user.predict(clip, {"offset_ms": 0.0, "label": label}, api_name="/figure")
        return time.perf_counter() - t, label == expected[i % len(clips)], handler_ms

    for i in range(2 * clients):  # warm-up: connections, first-call allocations
        one(i)
    cpu0, own0, t0 = proc_cpu_s(pid), proc_cpu_s(os.getpid()), time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall, cpu, own = time.perf_counter() - t0, proc_cpu_s(pid) - cpu0, proc_cpu_s(os.getpid()) - own0
    ms = 1000 * np.array([r[0] for r in results])
    handler = [r[2] for r in results if r[2] is not None]
    return {"path": path, "client": client, "requests": requests, "clients": clients,
            "wrong": sum(not r[1] for r in results),
            "requests_per_s": round(requests / wall, 1),
            "latency_ms": {"median": round(float(np.median(ms)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
                           "max": round(float(ms.max()), 1)},
            "server_cpu_ms_per_request": round(1000 * cpu / requests, 2),
            "client_cpu_ms_per_request": round(1000 * own / requests, 2),
            "handler_ms_median": round(float(np.median(handler)), 2) if handler else None,
            "server_rss_mb": round(proc_rss_mb(pid), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--paths", nargs="+", choices=["api", "ui", "bad"], default=["api", "ui"])
    p.add_argument("--client", choices=["http", "gradio_client"], default="http",
                   help="how the users talk to the server: Gradio's HTTP API over keep-alive connections "
                        "(light: the machine's cores go to the server), or gradio_client (about 120 ms of "
                        "client CPU a request here)")
    p.add_argument("--checkpoint", help="checkpoint or exported model to serve (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="one JSON object per path instead of text")
    args = p.parse_args()

    port = free_port()
    server = start_server(port, args.checkpoint)
    try:
        for path in args.paths:
            with tempfile.TemporaryDirectory() as scratch:
                r = run_path(path, f"http://127.0.0.1:{port}/", server.pid, args.requests, args.clients, args.client,
                             Path(scratch))
            if args.json:
                print(json.dumps(r))
                continue
            what = {"api": "/predict (JSON, no figure)", "ui": "/classify + figure (the Clip tab)",
                    "bad": "bad uploads to /predict (error answers)"}[path]
            print(f"{what} via {r['client']}: {r['requests']} requests, {r['clients']} concurrent users, "
                  f"{r['wrong']} wrong, "
                  f"{r['requests_per_s']} requests/s")
            print(f"  latency ms: median {r['latency_ms']['median']}, p95 {r['latency_ms']['p95']}, "
                  f"max {r['latency_ms']['max']}")
            handler = f", handler median {r['handler_ms_median']} ms" if r["handler_ms_median"] is not None else ""
            print(f"  server CPU per request {r['server_cpu_ms_per_request']} ms{handler}; "
                  f"server RSS {r['server_rss_mb']} MB; the clients' own CPU per request "
                  f"{r['client_cpu_ms_per_request']} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
