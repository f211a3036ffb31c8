"""matplotlib's backend in codebox runs (MPLBACKEND=module://servers._display_mpl; copied to
/servers/_display_mpl.py): draws with Agg, and plt.show() shows the open figures in the result."""
from matplotlib.backend_bases import FigureManagerBase as FigureManager  # noqa: F401
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas  # noqa: F401

from .display import show  # noqa: F401
