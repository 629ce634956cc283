"""The HTTP front: a FastAPI app over the service (``lift-sys serve``, Modal's ``asgi_app``).

``app`` wires routes to the service through the bounded ``queue``;
``schemas`` are the request/response models, ``guard`` refuses hostile
bodies and slow clients, ``metrics`` is /metrics, ``priority`` keeps the
event loop and the model from starving each other.
"""
