import pytest

from apps.jobs.domain.kinds import (
    BROKER_PRIORITY_STEPS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    JobKind,
    broker_priority,
    params_problems,
    queue_consumer_problem,
    queue_problem,
    time_limit_error,
)


@pytest.mark.parametrize("queue", ["default", "gpu.node1.0", "gpu.rack-a.node_7.3", "cpu:node1"])
def test_queue_problem_accepts_celery_queue_names(queue: str) -> None:
    assert queue_problem(queue) is None


@pytest.mark.parametrize("queue", ["", ".hidden", "has space", "x" * 101, "gpu/0"])
def test_queue_problem_explains_bad_names(queue: str) -> None:
    assert "queue name" in queue_problem(queue)


def test_params_must_be_an_object() -> None:
    assert params_problems(JobKind.SELFTEST, ["database"]) == {"": "Parameters must be a JSON object."}


def test_selftest_takes_no_params_by_default() -> None:
    assert params_problems(JobKind.SELFTEST, {}) == {}


def test_selftest_accepts_a_subset_of_its_checks() -> None:
    assert params_problems(JobKind.SELFTEST, {"checks": ["redis", "device"]}) == {}


def test_selftest_names_unknown_checks() -> None:
    problems = params_problems(JobKind.SELFTEST, {"checks": ["redis", "disk"]})

    assert "['disk']" in problems["checks"]


def test_selftest_refuses_an_empty_check_list() -> None:
    assert "non-empty" in params_problems(JobKind.SELFTEST, {"checks": []})["checks"]


def test_selftest_refuses_unknown_parameters() -> None:
    assert params_problems(JobKind.SELFTEST, {"verbose": True}) == {
        "verbose": "The self-test takes no such parameter."
    }


@pytest.mark.parametrize(
    ("priority", "expected"), [(100, 0), (90, 0), (89, 1), (50, 4), (10, 8), (9, 9), (0, 9)]
)
def test_broker_priority_maps_higher_moc_priority_to_a_lower_celery_redis_number(
    priority: int, expected: int
) -> None:
    assert broker_priority(priority) == expected


def test_broker_priority_never_ranks_a_higher_moc_priority_after_a_lower_one() -> None:
    mapped = [broker_priority(p) for p in range(PRIORITY_MIN, PRIORITY_MAX + 1)]

    assert mapped == sorted(mapped, reverse=True)
    assert set(mapped) == set(range(BROKER_PRIORITY_STEPS))


def test_broker_priority_clamps_values_outside_moc_range() -> None:
    assert (broker_priority(-5), broker_priority(500)) == (9, 0)


@pytest.mark.parametrize(("queue", "live"), [("default", set()), ("gpu.n1.0", {"default", "gpu.n1.0"})])
def test_queue_consumer_problem_accepts_default_and_live_queues(queue: str, live: set[str]) -> None:
    assert queue_consumer_problem(queue, live) is None


def test_queue_consumer_problem_names_the_queue_and_the_live_ones() -> None:
    problem = queue_consumer_problem("nobody.listens", {"default", "gpu.n1.1", "gpu.n1.0"})

    assert problem == (
        "No live worker consumes the queue 'nobody.listens', so the job would never run. "
        "Use 'default' or a queue a live worker consumes (live queues: 'gpu.n1.0', 'gpu.n1.1')."
    )


def test_queue_consumer_problem_says_when_no_queue_is_live() -> None:
    assert "(live queues: none right now)" in queue_consumer_problem("gpu.n1.0", set())


def test_time_limit_error_names_the_limit_and_its_setting() -> None:
    assert time_limit_error(21600) == "It ran past the task time limit of 21600 s (MOC_TASK_TIME_LIMIT)."
