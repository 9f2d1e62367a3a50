"""Reading a /metrics page the way Prometheus does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Samples:
    """The samples of one scrape, looked up by name and labels (absent samples are 0)."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        """A sample summed over all its labels."""
        return sum(value for (sample, _), value in self.values.items() if sample == name)

    def names(self) -> set[str]:
        return {name for name, _ in self.values}

    def minus(self, earlier: Samples, name: str, **labels: str) -> float:
        """How much a sample moved since `earlier`."""
        return self(name, **labels) - earlier(name, **labels)
