"""General matrix multiply on SciPy's BLAS, for what ``np.dot`` in ``@njit``
cannot do: accumulate into the output (``beta``) and read or write
matrices whose rows are strided, such as a column block of a wider array.

``_gemm(a, b, c, transpose_a, transpose_b, beta)`` computes
``c = op(a) @ op(b) + beta * c`` on row-major float32 or float64 matrices
whose elements are contiguous within a row (any row stride). It calls the
same ``numba_xxgemm`` entry point Numba's own ``np.dot`` uses, so compiled
callers stay cacheable. It is a helper of the CPU kernels, not an op: the
CUDA kernels have their own tiled GEMM (``kernels/cuda/dense.py``).
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

ensure_blas()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``numba_xxgemm`` with the scalars ``alpha`` and
    ``beta`` passed by address, as BLAS wants; returns its status."""
    matrices = (a, b, c)
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in matrices):
        return None
    if a.dtype not in (types.float32, types.float64) or not a.dtype == b.dtype == c.dtype:
        return None
    signature = types.intc(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, sig, args):
        char, size, void_p = ir.IntType(8), context.get_value_type(types.intp), cgutils.voidptr_t
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [
            char, char, char, size, size, size, void_p, void_p, size, void_p, size, void_p, void_p, size,
        ]), "numba_xxgemm")
        dtype = sig.args[6].dtype
        kind = ir.Constant(char, ord("s" if dtype == types.float32 else "d"))

        def scalar_slot(value, value_type):
            cast = context.cast(builder, value, value_type, dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, cast), void_p)

        def data(value, array_type):
            return builder.bitcast(context.make_array(array_type)(context, builder, value).data, void_p)

        def flag(value):
            return builder.trunc(value, char)

        ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_ = args
        return builder.call(function, [
            kind, flag(ta), flag(tb), m_, n_, k_, scalar_slot(alpha_, sig.args[5]), data(a_, sig.args[6]), lda_,
            data(b_, sig.args[8]), ldb_, scalar_slot(beta_, sig.args[10]), data(c_, sig.args[11]), ldc_,
        ])

    return signature, codegen


@njit(cache=True, error_model="numpy", inline="always")
def _row_stride(matrix):
    """Elements between rows (BLAS's leading dimension); at least the row length."""
    rows, cols = matrix.shape
    if rows == 0 or cols == 0:
        return max(cols, 1)
    if cols > 1 and matrix.strides[1] != matrix.itemsize:
        raise ValueError("gemm: the elements of each row must be contiguous")
    if rows == 1:
        return cols
    if matrix.strides[0] < cols * matrix.itemsize or matrix.strides[0] % matrix.itemsize:
        raise ValueError("gemm: rows must follow each other in memory without overlapping")
    return matrix.strides[0] // matrix.itemsize


@njit(cache=True, error_model="numpy")
def _gemm(a, b, c, transpose_a=False, transpose_b=False, beta=0.0):
    """``c = op(a) @ op(b) + beta * c``, ``op`` the transpose where asked.

    a, b, c: 2-D arrays of one float dtype with contiguous rows; ``c``
    must not overlap ``a`` or ``b``. With ``beta == 0`` the old contents
    of ``c`` are not read.
    """
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    if (a.shape[1] if transpose_a else a.shape[0]) != m or (b.shape[1] if transpose_b else b.shape[0]) != k \
            or (b.shape[0] if transpose_b else b.shape[1]) != n:
        raise ValueError("gemm: the shapes of op(a), op(b) and c do not chain")
    if m == 0 or n == 0:
        return
    # Row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T: BLAS
    # sees each row-major matrix as its transpose, so the flags carry over
    # and the operands swap.
    status = _xxgemm(ord("T") if transpose_b else ord("N"), ord("T") if transpose_a else ord("N"), n, m, k,
                     1.0, b, _row_stride(b), a, _row_stride(a), beta, c, _row_stride(c))
    if status != 0:
        raise RuntimeError("gemm: the BLAS call failed")
