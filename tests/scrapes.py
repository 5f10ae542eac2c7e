"""Reading metrics in tests: this process's registry, or a scrape of ``GET /metrics`` parsed."""

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from fastapi1.http_metrics import recorder

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def sample(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 when it was never recorded), HTTP requests recorded so far included."""
    recorder.flush()
    return REGISTRY.get_sample_value(name, labels) or 0.0


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample of a parsed scrape (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        found
        for (sample_name, sample_labels), found in samples.items()
        if sample_name == name and wanted <= sample_labels
    )
