// Which uid sandboxed code runs as.

/** The unprivileged user baked into every sandbox image (/etc/passwd "sandbox"). */
export const SANDBOX_IMAGE_UID = 10001;

/**
 * The configured uid; otherwise the server's own uid, so files the code writes into the user's
 * directories belong to the server's user. Root never runs sandboxed code: a server running as
 * root uses the image's unprivileged user instead.
 */
export function sandboxUid(configured: number | undefined, serverUid: number = process.getuid?.() ?? 0): number {
  if (configured !== undefined) return configured;
  return serverUid === 0 ? SANDBOX_IMAGE_UID : serverUid;
}
