import type { ContainerCreateOptions, HostConfig } from "dockerode";
import type { OciRuntime, ResourceProfile } from "../../config/schema.js";
import type { ExtraMount } from "../backend.js";
import type { RuntimeSpec } from "../runtimes.js";

/** Sandboxes are the first the kernel's OOM killer takes (1000 is the most likely). */
export const SANDBOX_OOM_SCORE_ADJ = 1000;

export interface HardeningOptions {
  profile: ResourceProfile;
  ociRuntime: OciRuntime;
  /** The seccomp profile's JSON text. */
  seccompJson: string;
  workspaceDir: string;
  skillsDir: string;
  /** The user's installed packages, mounted read-only at /deps. */
  depsDir?: string | undefined;
  nofile: number;
  fsizeBytes: number;
  extraMounts?: ExtraMount[] | undefined;
  network?: { mode: string; extraHosts: string[] } | undefined;
}

const MiB = 1024 * 1024;

/**
 * Under gVisor the pids cgroup also counts the sandbox kernel's own threads (the Go runtime of
 * runsc's sentry and gofer): with the bare profile value, gVisor cannot even start a child
 * process, and a fork bomb kills the sandbox kernel instead of meeting a limit. Measured here:
 * 64 fails, 96 works; this headroom keeps the profile's budget for the code itself.
 */
export const RUNSC_PIDS_OVERHEAD = 128;

/** Fields the engine accepts that @types/dockerode does not list yet. */
export type SandboxHostConfig = HostConfig & { CgroupnsMode?: "private" | "host" };

/**
 * The HostConfig of every sandbox container. Each line is a layer of the security model in
 * docs/SECURITY.md; a unit test pins every one of them.
 */
export function hardenedHostConfig(o: HardeningOptions): SandboxHostConfig {
  const memory = o.profile.memoryMiB * MiB;
  return {
    // Security: no network at all; the bridge reaches the host through a unix socket. Only the
    // documented TCP mode of the bridge (for Docker Desktop) attaches a network.
    NetworkMode: o.network?.mode ?? "none",
    ...(o.network ? { ExtraHosts: o.network.extraHosts } : {}),
    // Security: nothing on the image can be changed; /tmp is the only scratch space.
    ReadonlyRootfs: true,
    // Security: no capabilities, no setuid escalation, a syscall allowlist.
    CapDrop: ["ALL"],
    SecurityOpt: ["no-new-privileges:true", `seccomp=${o.seccompJson}`],
    Privileged: false,
    // Security: memory without swap, so an allocation bomb ends in an OOM kill, not host swapping.
    Memory: memory,
    MemorySwap: memory,
    // Security: under host memory pressure the kernel's OOM killer picks a sandbox, not the server.
    OomScoreAdj: SANDBOX_OOM_SCORE_ADJ,
    NanoCpus: Math.round(o.profile.cpus * 1e9),
    // Security: a cgroup pids cap (not RLIMIT_NPROC, which counts per uid across the host).
    PidsLimit: o.profile.pidsLimit + (o.ociRuntime === "runsc" ? RUNSC_PIDS_OVERHEAD : 0),
    Ulimits: [
      { Name: "nofile", Soft: o.nofile, Hard: o.nofile },
      { Name: "fsize", Soft: o.fsizeBytes, Hard: o.fsizeBytes },
      { Name: "core", Soft: 0, Hard: 0 },
    ],
    // Security: /tmp counts against the memory limit; noexec keeps dropped binaries out of it.
    Tmpfs: { "/tmp": `rw,noexec,nosuid,nodev,size=${o.profile.tmpfsMiB}m,mode=1777` },
    // Security: no /dev/shm and no shared IPC namespace.
    IpcMode: "none",
    // Security: the container sees its own cgroup only (cgroup v1 engines default to the host's).
    CgroupnsMode: "private",
    // Security: only the user's own directories; never the docker socket, never other host paths.
    Mounts: [
      { Type: "bind", Source: o.workspaceDir, Target: "/workspace", ReadOnly: false, BindOptions: { Propagation: "rprivate" } },
      { Type: "bind", Source: o.skillsDir, Target: "/skills", ReadOnly: false, BindOptions: { Propagation: "rprivate" } },
      ...(o.depsDir ? [{ Type: "bind" as const, Source: o.depsDir, Target: "/deps", ReadOnly: true, BindOptions: { Propagation: "rprivate" as const } }] : []),
      ...(o.extraMounts ?? []).map((m) => ({ Type: "bind", Source: m.source, Target: m.target, ReadOnly: m.readOnly, BindOptions: { Propagation: "rprivate" } })),
    ] as HostConfig["Mounts"],
    // Security: output goes only to our attach stream; a json-file log would let a flood fill the host disk.
    LogConfig: { Type: "none", Config: {} },
    // Belt and braces: the engine removes the container once it exits even if we never get to.
    AutoRemove: true,
    Runtime: o.ociRuntime,
    Init: false,
  };
}

export interface ContainerSpecOptions extends HardeningOptions {
  image: string;
  /** The language runtime: its runner is PID 1. */
  runtimeSpec: Pick<RuntimeSpec, "command" | "env" | "path">;
  uid: number;
  /** Variables for a container started ahead of its run (RuntimeSpec.warmEnv). */
  warmEnv?: readonly string[];
  labels: Record<string, string>;
}

export function containerSpec(o: ContainerSpecOptions): ContainerCreateOptions {
  return {
    Image: o.image,
    Cmd: o.runtimeSpec.command(o.profile.memoryMiB),
    User: `${o.uid}:${o.uid}`,
    // A fixed name instead of the container id.
    Hostname: "codebox",
    WorkingDir: "/workspace",
    // Security: only these variables; nothing from the host's environment.
    Env: ["HOME=/tmp", "TMPDIR=/tmp", `PATH=${o.runtimeSpec.path}`, ...o.runtimeSpec.env, ...(o.warmEnv ?? [])],
    Labels: o.labels,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false,
    NetworkDisabled: !o.network,
    HostConfig: hardenedHostConfig(o),
  };
}
