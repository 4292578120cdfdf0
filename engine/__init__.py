"""jakcds: JAK inhibitor clinical decision support on declarative, cited rules (durable-rules).

    import jakcds
    result = jakcds.evaluate({"condition": "dermatomyositis", "failed_therapies": ["methotrexate"]})
    result.candidates[0].drug, result.model_dump(mode="json")
"""

from .decision.compiler import CompileError
from .decision.evaluate import Evaluator, InputError, evaluate, evaluator
from .decision.patient import Patient
from .decision.result import Result
from .decision.session import EngineError
from .ehr.chart import evaluate_fhir
from .knowledge.pack import Pack, PackError, load_pack

__all__ = [
    "CompileError",
    "EngineError",
    "Evaluator",
    "InputError",
    "Pack",
    "PackError",
    "Patient",
    "Result",
    "evaluate",
    "evaluate_fhir",
    "evaluator",
    "load_pack",
]
