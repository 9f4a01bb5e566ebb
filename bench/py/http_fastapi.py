# SPDX-License-Identifier: MIT
"""The seed's FastAPI hello route on uvicorn with uvloop, for bench/http_bench.sh.

    /usr/bin/python3 bench/py/http_fastapi.py --port N

GET / answers {"message":"Hello, World!"}; one worker, no access log.
uvicorn picks httptools when Debian's python3-httptools is installed (the
script installs it), else h11; the line it prints says which.
"""
import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello, World!"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    print(f"fastapi: uvicorn (loop uvloop, http {http}) on 127.0.0.1:{args.port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http=http,
                access_log=False, log_level="warning")
