"""core/components.py: the one Tarjan that program order and the floor check both use."""

from orchestrator.core.components import strongly_connected


def test_a_cycle_is_one_component_and_comes_after_what_it_needs() -> None:
    names = ["c", "a", "b", "d"]
    edges = {"a": ["b"], "b": ["a", "d"], "c": ["a"], "d": []}
    # d first (a and b need it), then a+b (in names order), then c (needs a)
    assert strongly_connected(names, edges) == [("d",), ("a", "b"), ("c",)]


def test_targets_outside_names_are_ignored_and_self_edges_make_no_cycle() -> None:
    assert strongly_connected(["x", "y"], {"x": ["x", "nowhere"], "y": ["x"]}) \
        == [("x",), ("y",)]


def test_a_long_chain_does_not_recurse() -> None:
    names = [f"n{i}" for i in range(5000)]
    edges = {n: [names[i + 1]] for i, n in enumerate(names[:-1])}
    edges[names[-1]] = [names[0]]  # closes the loop: one component of all 5000
    assert strongly_connected(names, edges) == [tuple(names)]
