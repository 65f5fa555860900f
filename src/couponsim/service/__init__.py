"""The live service: the design's HTTP API over the same flows, on the asyncio driver.

``app`` builds a FastAPI app from a :class:`~couponsim.service.config.ServiceConfig`;
its routes only translate HTTP to flow calls and back (``routes``), errors become
RFC 9457 problems (``problem``), the caller is named by a header or a signed token
(``identity``), statuses stream as Server-Sent Events through one pub/sub
subscriber per process (``sse``). ``worker`` runs the consumers, the schedulers
and the waiting room's admission; ``serve`` runs the app with uvicorn, with a
worker in the same process when asked.
"""
