"""Size: the artifact's bytes, the model's parameters, and the memory the loaded model holds.

The inspect probe counts the parameters by a rule per kind of model (evaluators/probes/inspect.py)
and reads the model process's memory; the document names the rule applied to each component.
"""

from .base import EvaluationInput, EvaluatorResult, probe_outcome


class SizeEvaluator:
    name = "size"
    probes = ("inspect",)
    queue = "evaluate"

    def applies(self, data: EvaluationInput) -> bool:
        return True

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        return {"inspect": {}}

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        inspected = probe_outcome(data, "inspect").document
        document = {
            "format": data.artifact_format,
            "size_bytes": data.artifact_bytes,
            "n_parameters": inspected["n_parameters"],
            "parameter_rules": {part["kind"]: part["rule"] for part in inspected["components"]},
            "parameter_components": inspected["components"],
            "loaded_rss_bytes": inspected["loaded_rss_bytes"],
            "process_rss_bytes": inspected["process_rss_bytes"],
            "peak_rss_bytes": inspected["peak_rss_bytes"],
            "memory_note": (
                "loaded_rss_bytes is what loading the model added to the model process; "
                "process_rss_bytes is all that process held when the inspect probe ran (interpreter, "
                "runtime and model, after predicting the test set), and peak_rss_bytes its "
                "high-water mark."
            ),
        }
        metrics = {"size_bytes": float(data.artifact_bytes), "n_parameters": float(inspected["n_parameters"])}
        return EvaluatorResult(metrics=metrics, intervals={}, document=document)

