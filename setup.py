"""Install graphc: a static-graph deep-learning compiler (TF1-style graphs, XLA-style passes)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"', Path("graphc/version.py").read_text()).group(1)

setup(
    name="graphc",
    version=version,
    description="A static-graph deep-learning compiler: TF1-style graphs, LLVM and CUDA backends",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The hand-written CUDA templates live in the top-level kernels/cuda folder; a wheel ships
    # them inside the package as graphc/_cuda_kernels (graphc.backends.cuda.render.kernels_dir).
    packages=find_packages(include=["graphc", "graphc.*"]) + ["graphc._cuda_kernels"],
    package_dir={"graphc._cuda_kernels": "kernels/cuda"},
    package_data={"graphc": ["py.typed"], "graphc._cuda_kernels": ["*.cuh"]},
    install_requires=["numpy>=1.23", "llvmlite>=0.41", "networkx>=2.8", "scipy-openblas32>=0.3.27"],
    extras_require={
        "cuda": ["pycuda>=2022.1"],
        "test": ["pytest>=7", "hypothesis>=6", "scikit-learn>=1.1", "ruff>=0.4", "pytest-xdist>=3",
                 "mpi4py>=4", "mpich",  # tests/distribute runs real MPI jobs
                 "tensorboard>=2.10",  # tests/summary reads event files with TensorBoard
                 "onnx>=1.16", "onnxruntime>=1.17",  # tests/onnx: suite, models, export
                 "import-linter>=2"],  # make test checks the layers (.importlinter)
        "mpi": ["mpi4py>=4", "mpich"],  # gc.distribute: data-parallel training over MPI
        "plot": ["matplotlib>=3.5"],
        "tensorboard": ["tensorboard>=2.10"],  # gc.summary: TensorBoard's protos and writer
        "examples": ["scikit-learn>=1.1", "tqdm>=4"],  # examples/: digits data, progress bars
        "onnx": ["onnx>=1.16", "onnxruntime>=1.17"],
    },
    entry_points={"console_scripts": ["graphc=graphc.cli:main"]},
)
