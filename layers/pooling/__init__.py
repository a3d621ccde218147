"""Pooling layers: windowed max/average pools and global pools, 1D to 3D."""

from layerserve.layers.pooling.average_pooling1d import AveragePooling1D
from layerserve.layers.pooling.average_pooling2d import AveragePooling2D
from layerserve.layers.pooling.average_pooling3d import AveragePooling3D
from layerserve.layers.pooling.global_average_pooling1d import GlobalAveragePooling1D
from layerserve.layers.pooling.global_average_pooling2d import GlobalAveragePooling2D
from layerserve.layers.pooling.global_average_pooling3d import GlobalAveragePooling3D
from layerserve.layers.pooling.global_max_pooling1d import GlobalMaxPooling1D
from layerserve.layers.pooling.global_max_pooling2d import GlobalMaxPooling2D
from layerserve.layers.pooling.global_max_pooling3d import GlobalMaxPooling3D
from layerserve.layers.pooling.max_pooling1d import MaxPooling1D
from layerserve.layers.pooling.max_pooling2d import MaxPooling2D
from layerserve.layers.pooling.max_pooling3d import MaxPooling3D

LAYERS = (
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
)
# The short names every Keras version exports for the same classes (Keras 3 and tf.keras
# write the long class names into files, but hand-written configs use either).
ALIASES = {
    **{f"MaxPool{r}D": f"MaxPooling{r}D" for r in (1, 2, 3)},
    **{f"AvgPool{r}D": f"AveragePooling{r}D" for r in (1, 2, 3)},
    **{f"GlobalMaxPool{r}D": f"GlobalMaxPooling{r}D" for r in (1, 2, 3)},
    **{f"GlobalAvgPool{r}D": f"GlobalAveragePooling{r}D" for r in (1, 2, 3)},
}

__all__ = [cls.__name__ for cls in LAYERS]
