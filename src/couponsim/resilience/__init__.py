"""resilience4j's circuit breaker, rate limiter and time limiter, on an injectable clock.

Each is a plain state machine that is told the time (seconds, as a float)
instead of reading a clock, so the same object runs in wall time in the
service and in virtual time in a SimPy model. No maintained Python library
gives these semantics with a clock one can inject (docs/design.md).
"""
