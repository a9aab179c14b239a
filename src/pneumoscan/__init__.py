"""pneumoscan: detect pneumonia on chest X-rays - train, evaluate, explain and serve classifiers.

The Python API (`pneumoscan docs python-api`) is the names in `__all__`. They are imported on first use, so
`import pneumoscan` loads neither torch nor numpy.
"""
__version__ = "0.1.0"
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
# Where the patient of an image is read, `--patient-key` (data/patients.py); here so the CLI parser needs no imports.
PATIENT_KEYS: tuple[str, str, str] = ("auto", "name", "folder")

# public name -> the module that defines it, imported when the name is first used
_LAZY: dict[str, str] = {
    "PneumoscanError": "pneumoscan.errors",
    "InputError": "pneumoscan.errors",
    "RefusedFilm": "pneumoscan.errors",
    "list_models": "pneumoscan.models.registry",
    "create_model": "pneumoscan.models.registry",
    "load_dataset": "pneumoscan.api",
    "Sample": "pneumoscan.data.labels",
    "load_image": "pneumoscan.data.preprocess",
    "train": "pneumoscan.api",
    "TrainedRun": "pneumoscan.api",
    "Predictor": "pneumoscan.inference.predictor",
    "Prediction": "pneumoscan.inference.prediction",
    "evaluate": "pneumoscan.api",
    "gradcam": "pneumoscan.api",
    "Explanation": "pneumoscan.explain.explanation",
    "compare": "pneumoscan.api",
    "plot_learning_curves": "pneumoscan.api",
    "plot_confusion_matrix": "pneumoscan.api",
    "plot_roc": "pneumoscan.api",
    "export_onnx": "pneumoscan.api",
    "ExportReport": "pneumoscan.export.onnx",
}

__all__ = ["CLASS_NAMES", "PATIENT_KEYS", *_LAZY]

# typing.TYPE_CHECKING without importing typing (about 10 ms); type checkers know the name
TYPE_CHECKING = False
if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports them
    from pneumoscan.api import (
        TrainedRun, compare, evaluate, export_onnx, gradcam, load_dataset, plot_confusion_matrix, plot_learning_curves,
        plot_roc, train,
    )
    from pneumoscan.data.labels import Sample
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.errors import InputError, PneumoscanError, RefusedFilm
    from pneumoscan.explain.explanation import Explanation
    from pneumoscan.export.onnx import ExportReport
    from pneumoscan.inference.prediction import Prediction
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.models.registry import create_model, list_models
else:  # hidden from type checkers, which then know the names above and flag a misspelt one
    def __getattr__(name: str) -> object:
        """A public name of `_LAZY`, imported from its module on first use (and kept here)."""
        import importlib

        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'pneumoscan' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})
del TYPE_CHECKING
