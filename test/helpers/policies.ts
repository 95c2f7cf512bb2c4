/**
 * A policy for tests with a loopback upstream: 127.0.0.1:PORT is allowed, any other host is held
 * for an operator (approvals ask, 60 s); with nobody attached it is refused (when_unattended: deny).
 * Start the supervisor with --unsafe-allow-loopback-upstreams so the proxy may dial loopback.
 */
export function askPolicyAllowingLoopback(port: number): string {
  return `version: 1
network_policies:
  upstream:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: 127.0.0.1
        port: ${port}
approvals:
  mode: ask
  timeout: 60
`;
}
