"""llama.cpp's own C++ server from the ``xllamacpp`` wheel: ``python -m models.xllamacpp_server``.

xllamacpp ships prebuilt CPU wheels (x86-64 with AVX2, no AVX-512 and no -march=native), so a
fresh machine installs it in seconds where llama-cpp-python compiles llama.cpp for minutes. Its
``Server`` is llama.cpp's ``llama-server`` (OpenAI chat API, Jinja chat templates, tool calls)
running on threads of this process; xllamacpp has no command-line entry point of its own, hence
this one, which takes the same few options ``EmbeddedLlmServer`` gives llama-cpp-python's.
It runs until SIGTERM or SIGINT, then shuts the server down and exits 0; a model that does not
load exits 1 with llama.cpp's reason printed above.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

#: llama.cpp's log levels: 1 error, 2 warning, 3 info (a few lines per request), 4 debug.
LOG_WARNINGS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.xllamacpp_server")
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--alias", default="local", help="the model name clients send")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.n_ctx
    params.model_alias = {args.alias}  # a set of names: a bare string would be split into letters
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.verbosity = LOG_WARNINGS
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as error:  # llama.cpp has logged why (bad file, no memory) above
        print(f"xllamacpp server did not start: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"listening on {server.listening_address}", flush=True)
    while not stop.wait(1.0):  # wake now and then: signal handlers run on the main thread
        pass
    del server  # its destructor stops llama.cpp's loop and joins its threads
    return 0


if __name__ == "__main__":
    sys.exit(main())
