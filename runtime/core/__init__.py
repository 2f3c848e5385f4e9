"""What every part of the runtime shares and nothing in it imports upwards: the gateway config
file (`config`) and the gateway's Prometheus metrics (`metrics`), which the gateway, its tracer
and its guardrails sidecar all use."""
