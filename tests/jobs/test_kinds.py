import pytest

from apps.jobs.domain.kinds import JobKind, params_problems, queue_problem


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
