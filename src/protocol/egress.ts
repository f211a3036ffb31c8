// How sandboxed code reaches the egress proxy: a unix socket in a folder mounted read-only into
// the one container it serves, and a forwarder the runner starts on the container's loopback so
// ordinary clients (fetch, npm, pip, requests) find it through the usual proxy variables.

/** Where the container's egress folder is mounted, and the proxy's socket in it. */
export const SANDBOX_EGRESS_DIR = "/run/codebox-egress";
export const EGRESS_SOCKET_NAME = "proxy.sock";
export const SANDBOX_EGRESS_SOCKET = `${SANDBOX_EGRESS_DIR}/${EGRESS_SOCKET_NAME}`;

/** Set by the host for a run allowed egress: the socket the runner's forwarder connects to. */
export const EGRESS_SOCKET_ENV = "CODEBOX_EGRESS_SOCKET";

/** The forwarder's address on the container's loopback (HTTP_PROXY and friends point here). */
export const EGRESS_LOCAL_PORT = 3128;
export const EGRESS_PROXY_URL = `http://127.0.0.1:${EGRESS_LOCAL_PORT}`;

/** The variables a run allowed egress gets, so clients use the proxy without changes. */
export function egressClientEnv(): Record<string, string> {
  return {
    HTTP_PROXY: EGRESS_PROXY_URL,
    HTTPS_PROXY: EGRESS_PROXY_URL,
    http_proxy: EGRESS_PROXY_URL,
    https_proxy: EGRESS_PROXY_URL,
    npm_config_proxy: EGRESS_PROXY_URL,
    npm_config_https_proxy: EGRESS_PROXY_URL,
    NO_PROXY: "",
    no_proxy: "",
  };
}
