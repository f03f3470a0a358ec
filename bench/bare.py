"""The baseline of bench/hotpath.py: what a plain aiohttp + asyncpg + PyJWT app does for the same three routes.

Same rows, same JSON as Taskdeck; but rows become dicts and stdlib json encodes them, and there is no session
check, no Redis, no middleware, no validation beyond the obvious. Its WHERE is the creator alone (an owner-led
index): the single-owner query Taskdeck had before projects, so the membership join's cost shows in the ratio.
    python bench/bare.py --port 8081 --dsn postgresql://... --secret S [--reuse-port] [--uvloop]
"""
import argparse, base64, hashlib, hmac, json  # noqa: E401 (kept short on purpose: it is the ~50-line baseline)

import asyncpg, jwt  # noqa: E401
from aiohttp import web

POOL, SECRET = web.AppKey("pool", asyncpg.Pool), web.AppKey("secret", str)
COLS = ("id, owner_id, project_id, assignee_id, title, description, status, priority, due_at, tags, comment_count, "
        "created_at, updated_at, completed_at")
LIST = f"SELECT {COLS} FROM tasks WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
GET = f"SELECT {COLS} FROM tasks WHERE id = $1 AND owner_id = $2"
INSERT = (f"INSERT INTO tasks (owner_id, title, description, priority, due_at, tags) "
          f"VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6) RETURNING {COLS}")


def row_json(row):
    return {k: (v.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(v, "strftime") else v) for k, v in row.items()}


def user_id(request):
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    try:
        return int(jwt.decode(token, request.app[SECRET], algorithms=["HS256"])["sub"])
    except jwt.InvalidTokenError:
        raise web.HTTPUnauthorized() from None


async def list_tasks(request):
    limit = min(max(int(request.query.get("limit", 20)), 1), 100)
    rows = await request.app[POOL].fetch(LIST, user_id(request), limit + 1)
    cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        payload = base64.urlsafe_b64encode(json.dumps([rows[-1]["created_at"].isoformat(), rows[-1]["id"]]).encode())
        cursor = payload.decode() + "." + hmac.new(request.app[SECRET].encode(), payload, hashlib.sha256).hexdigest()
    return web.json_response({"items": [row_json(r) for r in rows], "next_cursor": cursor})


async def get_task(request):
    row = await request.app[POOL].fetchrow(GET, int(request.match_info["id"]), user_id(request))
    if row is None:
        raise web.HTTPNotFound()
    return web.json_response(row_json(row))


async def create_task(request):
    body = await request.json()
    row = await request.app[POOL].fetchrow(INSERT, user_id(request), body["title"], body.get("description", ""),
                                             body.get("priority", "medium"), body.get("due_at"), body.get("tags", []))
    return web.json_response(row_json(row), status=201)


async def health(request):
    return web.json_response({"status": "ok"})


async def close_pool(app):
    await app[POOL].close()


async def make_app(dsn, secret):
    app = web.Application()
    app[SECRET], app[POOL] = secret, await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    app.on_cleanup.append(close_pool)
    app.router.add_get("/api/v1/tasks", list_tasks)
    app.router.add_post("/api/v1/tasks", create_task)
    app.router.add_get(r"/api/v1/tasks/{id:\d+}", get_task)
    app.router.add_get("/health", health)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--dsn", "--secret"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        __import__("uvloop").install()
    web.run_app(make_app(args.dsn, args.secret), host="127.0.0.1", port=args.port, reuse_port=args.reuse_port,
                access_log=None, print=None)
