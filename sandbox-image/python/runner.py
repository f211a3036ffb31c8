# codebox runner for Python: PID 1 inside every Python sandbox container.
#
# The same contract as the Node runner (sandbox-image/node/runner.mjs): boot before any code is
# known, read exactly one JSON line from stdin ({code, env, completion}: RunnerPayload in src/protocol/runner.ts), run the code as __main__ with
# /workspace as its directory, print nothing of its own on stdout, and end with the completion
# line on stdout and stderr once everything the code printed has been written.
# Security: every module the runner itself uses is imported here, before /workspace is put on
# sys.path: a file the code planted there (ast.py, asyncio.py) must never run as the runner's.
import ast
import asyncio
import importlib
import atexit
import builtins
import io
import json
import linecache
import os
import socket
import sys
import threading
import traceback
import types
import weakref

MAIN_PATH = "/workspace/__codebox_main__.py"
RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))


def fail(message):
    os.write(2, f"codebox runner: {message}\n".encode())
    os._exit(70)  # EX_SOFTWARE: the runner itself failed, not the user's code


def read_payload():
    line = sys.stdin.buffer.readline()
    if not line.endswith(b"\n"):
        fail("could not read the code to run: stdin closed before a payload arrived")
    try:
        payload = json.loads(line)
    except ValueError as err:
        fail(f"could not read the code to run: {err}")
    if not isinstance(payload, dict) or not isinstance(payload.get("code"), str):
        fail("payload has no code")
    return payload


def exit_status(err):
    """The exit code Python itself would use for a SystemExit."""
    code = err.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def print_error(err):
    """Prints an uncaught exception like Python does, without the runner's own frames."""
    te = traceback.TracebackException.from_exception(err)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not f.filename.startswith(RUNNER_DIR + "/")])
    sys.stderr.write("".join(te.format()))


def display(*objs, **kwargs):
    """Shows images (matplotlib figures, PIL images, PNG/JPEG/GIF/WebP/SVG bytes) in the run's
    result, and pandas frames as tables: servers.display.display, a builtin in every run."""
    from servers.display import display as show_in_result

    return show_in_result(*objs, **kwargs)


class TrackedFiles:
    """Files the code opened, flushed before the completion line: the host removes the container as
    soon as it reads that line, before Python's own shutdown would flush a file the code never
    closed (`f = open(...); f.write(...)` at the end of a script)."""

    def __init__(self):
        self.files = weakref.WeakSet()
        real_open = io.open

        def open(*args, **kwargs):  # noqa: A001 - it is the builtin, tracked
            f = real_open(*args, **kwargs)
            try:
                self.files.add(f)
            except TypeError:
                pass
            return f

        open.__doc__ = real_open.__doc__
        builtins.open = io.open = open

    def flush(self):
        for f in list(self.files):
            try:
                if not f.closed and f.writable():
                    f.flush()
            except Exception as err:  # noqa: BLE001 - reported, then the run ends as it would
                os.write(2, f"codebox: could not finish writing {getattr(f, 'name', 'a file')}: {err}\n".encode(errors="replace"))


class HyphenatedSkills:
    """`import skills.parse_csv` finds the skill folder /skills/parse-csv (skill names use "-")."""

    def find_spec(self, fullname, path=None, target=None):
        top, _, name = fullname.partition(".")
        if top != "skills" or not name or "." in name or "_" not in name:
            return None
        folder = "/skills/" + name.replace("_", "-")
        if os.path.exists("/skills/" + name) or not os.path.isdir(folder):
            return None
        import importlib.machinery
        import importlib.util
        init = folder + "/__init__.py"
        if os.path.isfile(init):
            return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[folder])
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = [folder]
        return spec


def seed_matplotlib():
    """The data image's matplotlib font list, made when the image was built, copied into the run's
    fresh config dir (MPLCONFIGDIR, in /tmp) so no run scans the fonts again. Done at boot, before
    any code is known."""
    baked, target = "/opt/codebox/matplotlib", os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(baked):
        return
    try:
        os.makedirs(target, mode=0o700, exist_ok=True)
        for name in os.listdir(baked):
            with open(os.path.join(baked, name), "rb") as src, open(os.path.join(target, name), "wb") as dst:
                dst.write(src.read())
    except OSError:
        pass  # matplotlib makes its own list then


def workspace_shadows_installed():
    """Whether /workspace holds a module (x.py or a folder x) named like an installed one. A
    preloaded module and everything it imports would then be the installed one, where a cold run
    imports the user's: such a workspace gets no preload."""
    try:
        mine = {e[:-3] if e.endswith(".py") else e for e in os.listdir("/workspace") if e.endswith(".py") or os.path.isdir("/workspace/" + e)}
    except OSError:
        return False
    installed = set(sys.builtin_module_names)
    for folder in sys.path[1:]:
        try:
            installed.update(e.split(".")[0] for e in os.listdir(folder))
        except OSError:
            pass
    return not mine.isdisjoint(installed)


def start_preload():
    """A warm container of the data image (the host sets CODEBOX_PYTHON_PRELOAD) imports the heavy
    modules in the background while it waits for its code: `import pandas` in the run then finds
    pandas loaded, or waits for the import already under way."""
    names = [n for n in os.environ.pop("CODEBOX_PYTHON_PRELOAD", "").split(",") if n]
    if not names or workspace_shadows_installed():
        return

    def preload():
        # The run, when it comes, goes first for the CPU (the kernel schedules threads by their nice).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the run imports it again and sees the error itself
                pass

    threading.Thread(target=preload, name="codebox-preload", daemon=True).start()


def start_egress_forwarder(path, port):
    """A run the host allowed egress: a forwarder on the loopback to the host's egress proxy (a
    unix socket; the sandbox has no network). HTTP_PROXY and friends point at it, so urllib,
    requests and pip use it as they are."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)

    def pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def accept():
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(path)
            except OSError:
                client.close()
                upstream.close()
                continue
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, name="codebox-egress", daemon=True).start()


def main():
    # The user's installed packages (/deps, read-only) come before the image's own, so an upgrade
    # they installed wins; the runner's own imports are all done by now.
    site = next((i for i, p in enumerate(sys.path) if p.endswith("-packages")), len(sys.path))
    sys.path.insert(site, "/deps/python/site")
    seed_matplotlib()
    # Before the plot backend is chosen (pyplot picks it lazily, on the first figure).
    if os.path.isfile("/servers/display.py"):
        os.environ["MPLBACKEND"] = "module://servers._display_mpl"
    start_preload()
    payload = read_payload()
    # Nothing else arrives on stdin: input() gets EOF, as in a script run without a terminal.
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for key, value in (payload.get("env") or {}).items():
        if isinstance(key, str) and isinstance(value, str):
            os.environ[key] = value

    if os.environ.get("CODEBOX_EGRESS_SOCKET"):
        try:
            start_egress_forwarder(os.environ["CODEBOX_EGRESS_SOCKET"], 3128)
        except OSError as err:
            print(f"codebox: egress is unavailable for this run ({err})", file=sys.stderr)

    # Images: display() as a builtin, and matplotlib's plt.show() into the result, when this
    # run's /servers has the helper (it is generated with the bridge client).
    if os.path.isfile("/servers/display.py"):
        builtins.display = display

    # Output reaches the caller line by line while the code runs (progress notifications).
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)

    state = {"status": 0}
    files = TrackedFiles()
    completion = payload.get("completion")
    if isinstance(completion, str):
        def trailer():
            # atexit runs after non-daemon threads have finished and after handlers the code
            # registered itself (they were registered later): nothing the code prints follows it.
            logging = sys.modules.get("logging")
            if logging is not None:
                try:
                    logging.shutdown()
                except Exception:
                    pass
            files.flush()
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            line = f"{completion}{state['status']}\n".encode()
            for fd in (1, 2):
                try:
                    os.write(fd, line)
                except OSError:
                    pass
        atexit.register(trailer)

    # Imports: the code's own files in /workspace first, then the standard library, then
    # `servers.<server>.<tool>` (the generated bridge) and `skills.<name>` from the root.
    sys.path[0] = "/workspace"
    sys.path.append("/")
    sys.meta_path.append(HyphenatedSkills())

    source = payload["code"]
    # Tracebacks show the code's own lines, as they would for a file.
    linecache.cache[MAIN_PATH] = (len(source), None, source.splitlines(True), MAIN_PATH)
    main_module = types.ModuleType("__main__")
    main_module.__file__ = MAIN_PATH
    main_module.__builtins__ = __builtins__
    sys.modules["__main__"] = main_module
    try:
        # Top-level await is allowed (as in a notebook): such code runs on an asyncio loop.
        code = compile(source, MAIN_PATH, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        result = eval(code, main_module.__dict__)
        if result is not None and hasattr(result, "__await__"):
            asyncio.run(result)
    except SystemExit as err:
        state["status"] = exit_status(err)
    except BaseException as err:  # noqa: BLE001 - everything the code raises is reported
        print_error(err)
        state["status"] = 1
    sys.exit(state["status"])


main()
