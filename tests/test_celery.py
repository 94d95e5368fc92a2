"""Queue routing: a task sent to a queue must land in that queue and no other."""

from config.celery import app


def test_each_queue_has_its_own_exchange_and_routing_key():
    queues = {queue.name: queue for queue in app.conf.task_queues}
    assert set(queues) == {"backtests", "studies", "live"}
    for name, queue in queues.items():
        assert queue.exchange.name == name
        assert queue.routing_key == name


def test_a_task_sent_to_a_queue_is_routed_by_that_queue():
    router = app.amqp.router
    for name in ("backtests", "studies", "live"):
        route = router.route({"queue": name}, "runs.execute_run", args=(1,), kwargs={})
        assert route["queue"].name == name
        assert route["queue"].routing_key == name
