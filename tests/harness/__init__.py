"""The one test harness: what the tests share, each module for one kind of thing.

- `app`: the service's app in this process, served on a real loopback socket.
- `mocked`: the upstreams mocked with `responses` (`MockedUpstreams`, fixture
  `mocked_upstreams`): answers programmed per test, requests read back.
- `standins`: the upstreams as the stand-in servers of `placement_dev`
  (`StandInUpstreams`, fixtures `standin_upstreams` and, in tests/subsystem/api,
  `suite_standins`).
- `processes`: the real `placement-manager serve` process (`launch`, `ServeProcess`).
- `calls`: calls to the service through the generated public client.
- `nats`: a private NATS server with JetStream (`NatsServer`), publishing to it.
- `status_events`: provider status events as NATS messages, and what the service shows
  of them (GET/list, /metrics).
- `problems`: checks of problem-details answers.
- `concurrency`: waiting for a condition, running a call in the background.
- `databases`: the PostgreSQL servers and databases the tests run on.
- `records`: records read and written straight in a database, behind the service.
- `fakes`: in-memory fakes of the service's dependencies, for domain tests.
- `oidc`: an OpenID Connect issuer that signs test tokens.
"""
