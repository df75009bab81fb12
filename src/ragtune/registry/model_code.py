"""The pyfunc model's code file (MLflow "models from code"): logged with the model, run on load.

MLflow executes this file when it loads the model, instead of unpickling an object, so loading runs
only this known code. It needs ``ragtune`` installed where the model is served. Never import it.
"""

from mlflow.models import set_model

from ragtune.registry.pyfunc_model import AdapterModel

set_model(AdapterModel())
