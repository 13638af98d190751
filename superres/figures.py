"""Figures drawn off-screen and saved atomically (run curves, --compare, docs figures)."""


def subplots(*args, **kwargs):
    """matplotlib's subplots on the off-screen Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, path, dpi=100, replace=True):
    """Write ``fig`` as a PNG at ``path`` atomically (``replace=False``: only if nothing is
    there by then, else FileExistsError), then close it."""
    import matplotlib.pyplot as plt

    from superres.fileio import atomic_path

    try:
        with atomic_path(path, replace) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
