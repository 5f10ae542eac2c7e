"""RabbitMQ through aio-pika: the optional broker between the outbox, the API and the worker processes."""
