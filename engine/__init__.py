"""jakcds: JAK inhibitor clinical decision support on declarative, cited rules (durable-rules).

    import jakcds
    result = jakcds.evaluate({"condition": "dermatomyositis", "failed_therapies": ["methotrexate"]})
    result.candidates[0].drug, result.model_dump(mode="json")
"""

from .compiler import CompileError
from .evaluate import Evaluator, InputError, evaluate, evaluate_fhir, evaluator
from .pack import Pack, PackError, load_pack
from .patient import Patient
from .result import Result
from .session import EngineError

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
