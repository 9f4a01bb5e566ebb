# SPDX-License-Identifier: MIT
# todo_api in FastAPI: the same service as main.c, for the comparison in
# docs/guide.md. Debian 12's python3-fastapi (0.92, pydantic 1.10),
# python3-asyncpg and python3-uvicorn.
#
#   DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/db python3 fastapi_app.py --port 8000
import argparse
import os
import uuid
from typing import Optional

import asyncpg
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, StrictBool, constr

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
COLUMNS = "id, title, done, created_at"
Title = constr(strict=True, min_length=1, max_length=200)

app = FastAPI(title="todo_api", version="1.0.0")
app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "PATCH", "DELETE"],
                   allow_headers=["Content-Type", "X-Request-ID"], max_age=600)


class TodoIn(BaseModel):
    title: Title
    done: StrictBool = False


class TodoPatch(BaseModel):
    title: Optional[Title] = None
    done: Optional[StrictBool] = None


@app.on_event("startup")
async def startup():
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=8)
    await app.state.pool.execute("CREATE TABLE IF NOT EXISTS todos (id bigserial PRIMARY KEY, title text NOT NULL, "
                                 "done boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now())")


@app.on_event("shutdown")
async def shutdown():
    await app.state.pool.close()


async def get_db():
    async with app.state.pool.acquire() as conn:
        yield conn


@app.middleware("http")
async def request_id(request: Request, call_next):
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
    request.state.request_id = rid
    try:
        response = await call_next(request)
    except (OSError, asyncpg.PostgresConnectionError):
        response = JSONResponse({"detail": "database unavailable"}, status_code=503)
    except Exception:
        response = JSONResponse({"detail": "Internal Server Error", "request_id": rid}, status_code=500)
    response.headers["X-Request-ID"] = rid
    return response


def found(row):
    if row is None:
        raise HTTPException(404, "Todo not found")
    return dict(row)


@app.get("/todos")
async def list_todos(limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
                     done: Optional[bool] = None, db=Depends(get_db)):
    rows = await db.fetch(f"SELECT {COLUMNS} FROM todos WHERE $3::boolean IS NULL OR done = $3 "
                          "ORDER BY id LIMIT $1 OFFSET $2", limit, offset, done)
    total = await db.fetchval("SELECT count(*) FROM todos WHERE $1::boolean IS NULL OR done = $1", done)
    return {"items": [dict(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@app.post("/todos", status_code=201)
async def create_todo(body: TodoIn, db=Depends(get_db)):
    return found(await db.fetchrow(f"INSERT INTO todos (title, done) VALUES ($1, $2) RETURNING {COLUMNS}",
                                   body.title, body.done))


@app.get("/todos/{id}")
async def get_todo(id: int = Path(gt=0), db=Depends(get_db)):
    return found(await db.fetchrow(f"SELECT {COLUMNS} FROM todos WHERE id = $1", id))


@app.patch("/todos/{id}")
async def update_todo(body: TodoPatch, id: int = Path(gt=0), db=Depends(get_db)):
    return found(await db.fetchrow("UPDATE todos SET title = coalesce($2, title), done = coalesce($3, done) "
                                   f"WHERE id = $1 RETURNING {COLUMNS}", id, body.title, body.done))


@app.delete("/todos/{id}", status_code=204)
async def delete_todo(id: int = Path(gt=0), db=Depends(get_db)):
    if await db.execute("DELETE FROM todos WHERE id = $1", id) == "DELETE 0":
        raise HTTPException(404, "Todo not found")
    return Response(status_code=204)


app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
