# Run inside a Python sandbox for the codebox://sandbox/<runtime> resource: measures the isolation from the inside,
# the way an attacker would see it, and prints one JSON object (SandboxFacts).
import errno, fcntl, json, os, platform, re, socket, struct, sys

def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None

status = read("/proc/self/status") or ""
def field(k):
    m = re.search(r"^" + k + r":\s*(\S+)", status, re.M)
    return m.group(1) if m else None

def limit(name):
    for line in (read("/proc/self/limits") or "").split("\n"):
        if line.startswith(name):
            soft = line[26:].split()[0]
            return "unlimited" if soft == "unlimited" else int(soft)
    return None

def writable(p):
    f = p + "/.codebox-probe-" + str(os.getpid())
    try:
        with open(f, "w") as fh:
            fh.write("x")
        os.unlink(f)
        return True
    except OSError:
        return False

def num(t):
    v = (t or "").strip()
    return int(v) if v.isdigit() else ("max" if v == "max" else None)

def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1.5).close()
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, "error")

def lookup(host):
    try:
        socket.getaddrinfo(host, 80)
        return "resolved"
    except socket.gaierror as e:
        return {socket.EAI_NONAME: "ENOTFOUND", socket.EAI_AGAIN: "EAI_AGAIN"}.get(e.errno, "EAI_FAIL")
    except OSError as e:
        return errno.errorcode.get(e.errno, "error")

def interfaces():
    # Like Node's os.networkInterfaces(): interfaces that have an address.
    v6 = {line.split()[-1] for line in (read("/proc/net/if_inet6") or "").splitlines() if line.strip()}
    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            try:
                fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
                out.append(name)
            except OSError:
                if name in v6:
                    out.append(name)
    finally:
        s.close()
    return out

mem_v1 = num(read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
mem_v2 = num(read("/sys/fs/cgroup/memory.max"))
pids = num(read("/sys/fs/cgroup/pids/pids.max"))
if pids is None:
    pids = num(read("/sys/fs/cgroup/pids.max"))
quota = num(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
period = num(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
cpu_max = (read("/sys/fs/cgroup/cpu.max") or "").split()
if isinstance(quota, int) and quota > 0 and isinstance(period, int):
    cpus = quota / period
elif len(cpu_max) == 2 and cpu_max[0] != "max":
    cpus = int(cpu_max[0]) / int(cpu_max[1])
else:
    cpus = None
try:
    st = os.statvfs("/tmp")
    tmp_bytes = st.f_blocks * st.f_frsize
except OSError:
    tmp_bytes = None

print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "capEff": field("CapEff"),
    "capPrm": field("CapPrm"),
    "capBnd": field("CapBnd"),
    "noNewPrivs": None if field("NoNewPrivs") is None else field("NoNewPrivs") == "1",
    "seccompMode": None if field("Seccomp") is None else int(field("Seccomp")),
    "readOnlyRoot": not writable("/opt") and not writable("/"),
    "writable": {"workspace": writable("/workspace"), "skills": writable("/skills"), "tmp": writable("/tmp"), "servers": writable("/servers")},
    "network": {
        "interfaces": interfaces(),
        "tcpToInternet": connect("1.1.1.1", 443),
        "cloudMetadata": connect("169.254.169.254", 80),
        "dns": lookup("example.com"),
    },
    "limits": {
        "memoryBytes": mem_v1 if mem_v1 is not None else mem_v2,
        "cpus": cpus,
        "pids": pids,
        "openFiles": limit("Max open files"),
        "fileSizeBytes": limit("Max file size"),
        "tmpBytes": tmp_bytes,
    },
    "dockerSocket": any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock")),
    "environment": sorted(os.environ.keys()),
    "kernel": platform.release(),
    "interpreter": {"name": "python", "version": platform.python_version()},
}))
