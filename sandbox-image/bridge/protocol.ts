// In this repository only: lets client.ts type-check against the host's definition. In a sandbox,
// /servers/protocol.ts is generated from the same constants (src/bridge/codegen/clients.ts).
export { CLIENT_PROTOCOL as PROTOCOL } from "../../src/protocol/bridge.ts";
