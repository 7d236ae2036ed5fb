"""gunicorn settings shared by the Procfile (Railway), railway.json and `make run`.

Memory: one worker holds PyTorch, the LiteRT runtime and both models, about 400 MB resident (measured
by bench/bench_http.py; TensorFlow itself is not loaded to serve); size WEB_CONCURRENCY to the
instance's memory. Each worker loads and warms
up the models once when it boots (app.py -> create_app), and inference threads are capped so that
workers x threads do not oversubscribe the CPU cores.
"""

import contextlib
import ctypes
import os
import sys

# gunicorn reads this file before it puts the working directory on sys.path; where the project is not installed
# as a package (the Docker image), `models` must be found next to this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from models import settings  # the settings table only: no NumPy or framework in the master

# deploy/start.py runs gunicorn on a private Unix socket behind nginx; `make run` binds 127.0.0.1:$PORT;
# alone, gunicorn binds 0.0.0.0:$PORT.
bind = settings.get("GUNICORN_BIND") or f"0.0.0.0:{settings.get_int('PORT')}"
workers = settings.get_int("WEB_CONCURRENCY")
# Request threads mostly wait for a model pass; each model's scheduler (models/batching.py) can only merge
# and prioritise the requests that are inside the worker, so there are as many threads as expected clients.
threads = settings.get_int("GUNICORN_THREADS")
timeout = settings.get_int("GUNICORN_TIMEOUT")  # a 32-image request with URL fetches fits easily
graceful_timeout = 30
# An idle kept-alive connection stays open longer than nginx keeps it (deploy/nginx.conf: 60 s): with gunicorn's
# default of 2 s, nginx now and then sent a request down a connection gunicorn was closing, and answered 502.
keepalive = 75
preload_app = False  # each worker imports app.py and loads its own models (TF is not fork-safe)
max_requests = settings.get_int("GUNICORN_MAX_REQUESTS")  # set >0 to recycle workers periodically
accesslog = "-"
# gunicorn's default line and how long the app took: a request's time is in the log (bench/bench_soak.py reads it).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
errorlog = "-"
# nginx in front refuses a request line or header line over 8 KB and 32 KB of headers (deploy/nginx.conf), in the
# app's error shape; gunicorn's own limits sit above that, so nginx answers every request that is too large.
limit_request_line = 8190  # gunicorn's largest; nginx's line buffer is 8 KB with its CRLF
limit_request_field_size = 16384  # nginx appends the peer to X-Forwarded-For
limit_request_fields = 32768  # gunicorn's largest
# Request threads (gthread) whose own refusals (a header with a control character, a raw non-ASCII byte in the path,
# a line over its limits) take the app's error shape, JSON under /api/ (deploy/worker.py). The pure-Python parser
# raises its errors from inside the request it is parsing, which is how the worker knows the request's path.
worker_class = "deploy.worker.JsonErrorThreadWorker"
http_parser = "python"
# gunicorn 27's control socket defaults to one path per user; nothing here uses it, and two servers run by one
# user (tests, replicas on a VM) would share and delete each other's.
control_socket_disable = True

# Math-library threads per worker: the cores divided among the workers (at least 1). Set before the
# workers import torch / TensorFlow, which read these at start-up.
_cores = os.cpu_count() or 1
_per_worker = str(max(1, _cores // max(1, workers)))
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    settings.set_default(_name, _per_worker)
settings.set_default("TF_NUM_INTEROP_THREADS", "1")
settings.set_default("TF_CPP_MIN_LOG_LEVEL", "2")


def post_fork(server, worker):
    """Per worker: at most 2 malloc arenas, a shorter switch interval, and torch's thread count.

    glibc gives request threads their own malloc arenas once they contend, and memory freed in one
    arena is not reused by another: with 16 request threads the worker's RSS kept creeping up under
    load (bench/bench_http.py soak). torch reads its thread count from torch.set_num_threads, not only
    from OMP_NUM_THREADS.
    """
    with contextlib.suppress(OSError):  # not glibc (macOS, musl): nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    # A thread that has released Python's lock (a model pass, a decode's wait) waits up to the switch interval to get
    # it back from a thread busy in Python (parsing an upload): 5 ms by default, once per layer of an eager network.
    # Under a mixed flood 1 ms cut another user's p95 from 3.5 s to 2.3 s (bench/bench_soak.py --only mixed-flood).
    sys.setswitchinterval(0.001)
    try:
        import torch

        torch.set_num_threads(settings.get_int("OMP_NUM_THREADS"))
    except ImportError:
        pass


def secret_key_problem(worker_count: int) -> str | None:
    """Why this server must not start without SECRET_KEY, or None. Each process that generates its own key
    rejects the CSRF tokens of the others: with 2 workers, 1 in 6 form posts failed."""
    if settings.get("SECRET_KEY"):
        return None
    if worker_count > 1:
        return f"SECRET_KEY is not set and WEB_CONCURRENCY={worker_count}: every worker would sign with its own key"
    if settings.get("RAILWAY_ENVIRONMENT"):
        return "SECRET_KEY is not set on Railway: replicas and redeploys would each sign with their own key"
    return None


def on_starting(server):
    """Refuse to start a deployment that would reject its own forms (one log line, exit status 1)."""
    problem = secret_key_problem(workers)
    if problem:
        server.log.error("refusing to start: %s. Set SECRET_KEY to one random value shared by every replica "
                         "(python -c 'import secrets; print(secrets.token_hex(32))').", problem)
        sys.exit(1)
