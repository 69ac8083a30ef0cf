"""`recengine serve` for real: a subprocess on a free loopback port, events and recommendations over HTTP."""

import signal
import socket
import subprocess
import sys
import time

import httpx

from recengine.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_over_http(tmp_path, model_dir, capsys):
    store = f"sqlite:///{tmp_path / 'served.db'}"
    assert main(["keys", "create", "tester", "--scopes", "write", "--store", store]) == 0
    key = capsys.readouterr().out.strip()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "recengine.cli", "serve", "--store", store, "--model-dir",
                               str(model_dir), "--port", str(port), "--log-level", "warning"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, server.stdout.read()
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the server did not come up within 60 s"
                    time.sleep(0.2)
            before = http.get("/v1/users/x/recommendations", params={"k": 5}).json()["items"]
            posted = http.post("/v1/events", json={"events": [{"user": "x", "item": f"c{j}"} for j in range(5)]})
            assert posted.status_code == 201
            after = http.get("/v1/users/x/recommendations", params={"k": 5}).json()["items"]
            assert [r["item"][0] for r in before].count("c") == 0
            assert [r["item"][0] for r in after].count("c") >= 4
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn finishes open requests and shuts down
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0 and "serving itemknn" in output, output
