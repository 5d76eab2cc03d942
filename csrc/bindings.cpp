// The only file that knows about pybind11: converts and checks Python operands,
// releases the GIL and calls the kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <exception>
#include <optional>
#include <string>

#include "common/c_abi.h"
#include "common/cpu_features.h"
#include "common/errors.h"
#include "common/gemm.h"
#include "common/output_blocks.h"
#include "common/shapes.h"
#include "common/threading.h"
#include "common/validate.h"
#include "activation.h"
#include "conv.h"
#include "norm.h"
#include "pool.h"
#include "softmax.h"

namespace py = pybind11;
using namespace cnnkit;

namespace {

using P2 = std::array<int64_t, 2>;
using P4 = std::array<int64_t, 4>;

Pair pair(const P2& p) { return {p[0], p[1]}; }

// Takes the GIL back after a kernel. A daemon thread that comes back while the
// interpreter finalises is ended by CPython with pthread_exit, whose forced unwind
// would release the caller's arrays without the GIL (and end the process with
// std::terminate where it meets a noexcept destructor, as py::gil_scoped_release's).
// Such a thread is parked instead until the process exits.
void take_gil(PyThreadState* state) {
  try {
    PyEval_RestoreThread(state);
  } catch (...) {  // only the forced unwind: CPython raises no C++ exceptions
    for (;;) pause();
  }
}

// Runs fn with the GIL released; its exceptions reach the caller with the GIL held.
template <class F>
void without_gil(F&& fn) {
  PyThreadState* state = PyEval_SaveThread();
  std::exception_ptr error;
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  take_gil(state);
  if (error) std::rethrow_exception(error);
}

template <class T>
struct Tag {
  using type = T;
};

// Checks that every float operand of one call is an ndarray of one float dtype.
class Operands {
 public:
  explicit Operands(const char* op) : op_(op) {}

  py::array add(const char* name, const py::handle& obj) {
    if (!py::isinstance<py::array>(obj))
      raise_type(op_, ": ", name, ": expected a numpy.ndarray of float32 or float64, got ",
                 std::string(py::str(py::type::of(obj).attr("__name__"))));
    auto a = py::reinterpret_borrow<py::array>(obj);
    add_dtype(name, a.dtype());
    return a;
  }

  // The dtype checks alone (for the arrays of another library, such as CuPy's).
  void add_dtype(const char* name, const py::dtype& dtype) {
    const bool f32 = dtype.is(py::dtype::of<float>());
    const bool f64 = dtype.is(py::dtype::of<double>());
    if (!f32 && !f64)
      raise_type(op_, ": ", name, ": expected dtype float32 or float64, got ",
                 std::string(py::str(dtype)));
    if (!first_) {
      first_ = name;
      f64_ = f64;
    } else if (f64 != f64_) {
      raise_type(op_, ": ", name, ": expected dtype ", f64_ ? "float64" : "float32",
                 " to match ", first_, ", got ", std::string(py::str(dtype)));
    }
  }

  bool any() const { return first_ != nullptr; }
  bool f64() const { return f64_; }

  std::optional<py::array> add_optional(const char* name, const py::handle& obj) {
    if (obj.is_none()) return std::nullopt;
    return add(name, obj);
  }

  template <class F>
  py::object dispatch(F&& fn) const {
    return f64_ ? py::object(fn(Tag<double>{})) : py::object(fn(Tag<float>{}));
  }

 private:
  const char* op_;
  const char* first_ = nullptr;
  bool f64_ = false;
};

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// Kernels read operands as C-contiguous arrays of aligned elements: a valid but
// misaligned view (np.frombuffer at an odd offset) is copied, like a strided one.
constexpr int kKernelLayout = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
template <class T>
using KernelArray = py::array_t<T, kKernelLayout>;

template <class T, int Flags = kKernelLayout>
py::array_t<T, Flags> ensure_layout(const py::array& a) {
  auto r = py::array_t<T, Flags>::ensure(a);
  if (!r) throw std::bad_alloc();  // ensure() fails only when the copy cannot be made
  return r;
}

template <class T>
KernelArray<T> contiguous(const py::array& a) {
  return ensure_layout<T>(a);
}

template <class T>
const T* cptr(const std::optional<KernelArray<T>>& a) {
  return a ? a->data() : nullptr;
}

// A new output; a large one's memory is a kept block (common/output_blocks.h), which
// the array's base returns when Python frees it.
template <class T>
py::array_t<T> empty(const Shape& s) {
  std::vector<py::ssize_t> shape(s.begin(), s.end());
  size_t bytes = sizeof(T);
  bool overflow = false;
  for (py::ssize_t d : shape) overflow |= __builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes);
  if (overflow || bytes < kKeptOutputMinBytes) return py::array_t<T>(shape);  // numpy says why
  void* block = acquire_output_block(bytes);
  if (!block) throw std::bad_alloc();
  py::capsule owner(block, [](void* b) { release_output_block(b); });
  return py::array_t<T>(shape, static_cast<T*>(block), owner);
}

template <class T>
std::optional<KernelArray<T>> contiguous(const std::optional<py::array>& a) {
  if (!a) return std::nullopt;
  return contiguous<T>(*a);
}

// The backward of a layer with an input, a weight and a bias: the gradients that mask
// asks for (the others are None), shaped like x, w and (bias_len,), filled by
// backward(gy, x, w, gx, gw, gb) (null for the others) with the GIL released.
using Mask3 = std::array<bool, 3>;

template <class Backward>
py::object backward_xwb(const Operands& ops, const py::array& ga, const py::array& xa,
                        const py::array& wa, int64_t bias_len, const Mask3& mask,
                        Backward&& backward) {
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    // x enters only the weight gradient, w only the input gradient: neither is copied
    // (or passed) where it is not needed.
    auto xc = contiguous<T>(mask[1] ? std::optional<py::array>(xa) : std::nullopt);
    auto wc = contiguous<T>(mask[0] ? std::optional<py::array>(wa) : std::nullopt);
    std::optional<py::array_t<T>> grads[3];
    const Shape shapes[3] = {shape_of(xa), shape_of(wa), {bias_len}};
    T* ptrs[3] = {nullptr, nullptr, nullptr};
    for (int i = 0; i < 3; ++i)
      if (mask[i]) {
        grads[i] = empty<T>(shapes[i]);
        ptrs[i] = grads[i]->mutable_data();
      }
    without_gil([&] { backward(gc.data(), cptr<T>(xc), cptr<T>(wc), ptrs[0], ptrs[1], ptrs[2]); });
    py::object out[3];
    for (int i = 0; i < 3; ++i) out[i] = grads[i] ? py::object(*grads[i]) : py::none();
    return py::make_tuple(out[0], out[1], out[2]);
  });
}

// ---- Convolution family

py::object py_conv2d(py::handle x, py::handle w, py::handle b, P2 stride, P4 pad, P2 dil,
                  int64_t groups) {
  Operands ops("conv2d");
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto ba = ops.add_optional("bias", b);
  Shape bs = ba ? shape_of(*ba) : Shape{};
  auto g = conv2d_geometry("conv2d", shape_of(xa), shape_of(wa), ba ? &bs : nullptr,
                           pair(stride), {pad[0], pad[1], pad[2], pad[3]}, pair(dil), groups);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto bc = contiguous<T>(ba);
    auto y = empty<T>({g.n, g.c_out, g.ho, g.wo});
    T* yp = y.mutable_data();
    without_gil([&] {
      conv2d_forward<T>(xc.data(), wc.data(), cptr<T>(bc), yp, g);
    });
    return y;
  });
}

// "" (the forward), "input" or "weight" (that gradient).
ConvPass conv_pass(const char* op, const std::string& grad) {
  if (grad.empty()) return ConvPass::forward;
  if (grad == "input") return ConvPass::grad_input;
  if (grad == "weight") return ConvPass::grad_weight;
  raise_value(op, ": grad: expected None, 'input' or 'weight', got '", grad, "'");
}

py::str py_conv2d_algorithm(py::handle x, py::handle w, P2 stride, P4 pad, P2 dil, int64_t groups,
                            const std::string& grad) {
  const char* op = "conv2d_algorithm";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto g = conv2d_geometry(op, shape_of(xa), shape_of(wa), nullptr, pair(stride),
                           {pad[0], pad[1], pad[2], pad[3]}, pair(dil), groups);
  return py::str(conv2d_algorithm(g, xa.dtype().itemsize(), conv_pass(op, grad)));
}

py::object py_conv2d_backward(py::handle gy, py::handle x, py::handle w, P2 stride, P4 pad, P2 dil,
                              int64_t groups, Mask3 output_mask) {
  const char* op = "conv2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto g = conv2d_geometry(op, shape_of(xa), shape_of(wa), nullptr, pair(stride),
                           {pad[0], pad[1], pad[2], pad[3]}, pair(dil), groups);
  check_shape(op, "grad_output", shape_of(ga), {g.n, g.c_out, g.ho, g.wo});
  return backward_xwb(ops, ga, xa, wa, g.c_out, output_mask,
                      [&](const auto* gy, const auto* xp, const auto* wp, auto* gx, auto* gw,
                          auto* gb) { cnnkit::conv2d_backward(gy, xp, wp, gx, gw, gb, g); });
}

py::str py_conv_transpose2d_algorithm(py::handle x, py::handle w, P2 stride, P2 pad, P2 out_pad,
                                      int64_t groups, P2 dil, const std::string& grad) {
  const char* op = "conv_transpose2d_algorithm";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto g = conv_transpose2d_geometry(op, shape_of(xa), shape_of(wa), nullptr, pair(stride),
                                     pair(pad), pair(out_pad), groups, pair(dil));
  return py::str(conv_transpose2d_algorithm(g, xa.dtype().itemsize(), conv_pass(op, grad)));
}

py::object py_conv_transpose2d(py::handle x, py::handle w, py::handle b, P2 stride, P2 pad,
                            P2 out_pad, int64_t groups, P2 dil) {
  const char* op = "conv_transpose2d";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto ba = ops.add_optional("bias", b);
  Shape bs = ba ? shape_of(*ba) : Shape{};
  auto g = conv_transpose2d_geometry(op, shape_of(xa), shape_of(wa), ba ? &bs : nullptr,
                                     pair(stride), pair(pad), pair(out_pad), groups, pair(dil));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto bc = contiguous<T>(ba);
    auto y = empty<T>({g.n, g.c_in, g.h, g.w});
    T* yp = y.mutable_data();
    without_gil([&] {
      conv_transpose2d_forward<T>(xc.data(), wc.data(), cptr<T>(bc), yp, g);
    });
    return y;
  });
}

py::object py_conv_transpose2d_backward(py::handle gy, py::handle x, py::handle w, P2 stride,
                                        P2 pad, P2 out_pad, int64_t groups, P2 dil,
                                        Mask3 output_mask) {
  const char* op = "conv_transpose2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto g = conv_transpose2d_geometry(op, shape_of(xa), shape_of(wa), nullptr, pair(stride),
                                     pair(pad), pair(out_pad), groups, pair(dil));
  check_shape(op, "grad_output", shape_of(ga), {g.n, g.c_in, g.h, g.w});
  return backward_xwb(ops, ga, xa, wa, g.c_in, output_mask,
                      [&](const auto* gy, const auto* xp, const auto* wp, auto* gx, auto* gw,
                          auto* gb) { cnnkit::conv_transpose2d_backward(gy, xp, wp, gx, gw, gb, g); });
}

py::object py_linear(py::handle x, py::handle w, py::handle b) {
  Operands ops("linear");
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto ba = ops.add_optional("bias", b);
  Shape bs = ba ? shape_of(*ba) : Shape{};
  check_linear("linear", shape_of(xa), shape_of(wa), ba ? &bs : nullptr);
  const int64_t n = xa.shape(0), in = xa.shape(1), out = wa.shape(0);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto bc = contiguous<T>(ba);
    auto y = empty<T>({n, out});
    T* yp = y.mutable_data();
    without_gil([&] {
      linear_forward<T>(xc.data(), wc.data(), cptr<T>(bc), yp, n, in, out);
    });
    return y;
  });
}

py::object py_linear_backward(py::handle gy, py::handle x, py::handle w) {
  const char* op = "linear_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  check_linear(op, shape_of(xa), shape_of(wa), nullptr);
  const int64_t n = xa.shape(0), in = xa.shape(1), out = wa.shape(0);
  check_shape(op, "grad_output", shape_of(ga), {n, out});
  return backward_xwb(ops, ga, xa, wa, out, {true, true, true},
                      [&](const auto* gy, const auto* xp, const auto* wp, auto* gx, auto* gw,
                          auto* gb) { cnnkit::linear_backward(gy, xp, wp, gx, gw, gb, n, in, out); });
}

// ---- Pooling

using Switches = KernelArray<int64_t>;

// Switches are int64 ndarrays of any layout.
Switches switches_operand(const char* op, const py::handle& obj) {
  if (!py::isinstance<py::array>(obj))
    raise_type(op, ": switches: expected a numpy.ndarray of int64, got ",
               std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<int64_t>()))
    raise_type(op, ": switches: expected dtype int64, got ", std::string(py::str(a.dtype())));
  return ensure_layout<int64_t>(a);
}

// Raises if a switch kernel met an index out of range (bad: its flat position or -1).
void check_switch_result(const char* op, const Switches& s, int64_t bad, int64_t plane) {
  check_switch(op, shape_of(s), bad, bad >= 0 ? s.data()[bad] : 0, plane);
}

py::object py_max_pool2d(py::handle x, P2 kernel, P2 stride, P2 pad, P2 dil, bool ceil_mode,
                         bool return_indices) {
  const char* op = "max_pool2d";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto g = pool2d_geometry(op, shape_of(xa), pair(kernel), pair(stride), pair(pad), pair(dil),
                           ceil_mode);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>({g.n, g.c, g.ho, g.wo});
    auto s = empty<int64_t>(return_indices ? Shape{g.n, g.c, g.ho, g.wo} : Shape{0});
    T* yp = y.mutable_data();
    int64_t* sp = return_indices ? s.mutable_data() : nullptr;
    without_gil([&] {
      max_pool2d_forward<T>(xc.data(), yp, sp, g);
    });
    return return_indices ? py::object(py::make_tuple(y, s)) : py::object(y);
  });
}

py::object py_max_pool2d_backward(py::handle gy, py::handle switches,
                                  const std::vector<int64_t>& input_shape) {
  const char* op = "max_pool2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto sa = switches_operand(op, switches);
  const Shape full = pool2d_input_shape(op, input_shape);
  auto g = switches_geometry(op, "grad_output", shape_of(ga), "input_shape", full);
  check_shape(op, "switches", shape_of(sa), shape_of(ga));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto gx = empty<T>(full);
    T* gxp = gx.mutable_data();
    int64_t bad;
    without_gil([&] {
      bad = max_pool2d_backward<T>(gc.data(), sa.data(), gxp, g);
    });
    check_switch_result(op, sa, bad, g.plane_in());
    return gx;
  });
}

py::object py_max_unpool2d(py::handle x, py::handle switches, P2 kernel, P2 stride, P2 pad,
                           const std::optional<std::vector<int64_t>>& output_size) {
  const char* op = "max_unpool2d";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto sa = switches_operand(op, switches);
  auto g = max_unpool2d_geometry(op, shape_of(xa), pair(kernel), pair(stride), pair(pad),
                                 output_size ? &*output_size : nullptr);
  check_shape(op, "switches", shape_of(sa), shape_of(xa));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>({g.n, g.c, g.h, g.w});
    T* yp = y.mutable_data();
    int64_t bad;
    without_gil([&] {
      bad = max_unpool2d_forward<T>(xc.data(), sa.data(), yp, g);
    });
    check_switch_result(op, sa, bad, g.plane_in());
    return y;
  });
}

py::object py_max_unpool2d_backward(py::handle gy, py::handle switches) {
  const char* op = "max_unpool2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto sa = switches_operand(op, switches);
  auto g = switches_geometry(op, "switches", shape_of(sa), "grad_output", shape_of(ga));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto gx = empty<T>(shape_of(sa));
    T* gxp = gx.mutable_data();
    int64_t bad;
    without_gil([&] {
      bad = max_unpool2d_backward<T>(gc.data(), sa.data(), gxp, g);
    });
    check_switch_result(op, sa, bad, g.plane_in());
    return gx;
  });
}

py::object py_avg_pool2d(py::handle x, P2 kernel, P2 stride, P2 pad, bool ceil_mode,
                         bool count_include_pad) {
  const char* op = "avg_pool2d";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto g = pool2d_geometry(op, shape_of(xa), pair(kernel), pair(stride), pair(pad), {1, 1},
                           ceil_mode);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>({g.n, g.c, g.ho, g.wo});
    T* yp = y.mutable_data();
    without_gil([&] {
      avg_pool2d_forward<T>(xc.data(), yp, g, count_include_pad);
    });
    return y;
  });
}

py::object py_avg_pool2d_backward(py::handle gy, const std::vector<int64_t>& input_shape,
                                  P2 kernel, P2 stride, P2 pad, bool ceil_mode,
                                  bool count_include_pad) {
  const char* op = "avg_pool2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  const Shape full = pool2d_input_shape(op, input_shape);
  auto g = pool2d_geometry(op, full, pair(kernel), pair(stride), pair(pad), {1, 1}, ceil_mode);
  check_shape(op, "grad_output", shape_of(ga), {g.n, g.c, g.ho, g.wo});
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto gx = empty<T>(full);
    T* gxp = gx.mutable_data();
    without_gil([&] {
      avg_pool2d_backward<T>(gc.data(), gxp, g, count_include_pad);
    });
    return gx;
  });
}

py::object py_lp_pool2d(py::handle x, double norm_type, P2 kernel, P2 stride, bool ceil_mode) {
  const char* op = "lp_pool2d";
  Operands ops(op);
  auto xa = ops.add("input", x);
  check_norm_type(op, norm_type);
  auto g = pool2d_geometry(op, shape_of(xa), pair(kernel), pair(stride), {0, 0}, {1, 1},
                           ceil_mode);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>({g.n, g.c, g.ho, g.wo});
    T* yp = y.mutable_data();
    without_gil([&] {
      lp_pool2d_forward<T>(xc.data(), yp, norm_type, g);
    });
    return y;
  });
}

py::object py_lp_pool2d_backward(py::handle gy, py::handle x, double norm_type, P2 kernel,
                                 P2 stride, bool ceil_mode) {
  const char* op = "lp_pool2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  check_norm_type(op, norm_type);
  auto g = pool2d_geometry(op, shape_of(xa), pair(kernel), pair(stride), {0, 0}, {1, 1},
                           ceil_mode);
  check_shape(op, "grad_output", shape_of(ga), {g.n, g.c, g.ho, g.wo});
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto xc = contiguous<T>(xa);
    auto gx = empty<T>(shape_of(xa));
    T* gxp = gx.mutable_data();
    without_gil([&] {
      lp_pool2d_backward<T>(gc.data(), xc.data(), gxp, norm_type, g);
    });
    return gx;
  });
}

// Plain matrix product on the GEMM wrapper: the yardstick the benchmarks compare
// convolutions with (same M, N, K).
py::object py_matmul(py::handle a, py::handle b) {
  const char* op = "matmul";
  Operands ops(op);
  auto aa = ops.add("a", a);
  auto ba = ops.add("b", b);
  check_ndim(op, "a", shape_of(aa), 2, "(M, K)");
  check_ndim(op, "b", shape_of(ba), 2, "(K, N)");
  const int64_t m = aa.shape(0), k = aa.shape(1), n = ba.shape(1);
  if (ba.shape(0) != k)
    raise_value(op, ": b: expected ", k, " rows to match a's columns, got shape ",
                shape_str(shape_of(ba)));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto ac = contiguous<T>(aa);
    auto bc = contiguous<T>(ba);
    auto c = empty<T>({m, n});
    T* cp = c.mutable_data();
    without_gil([&] {
      if (k == 0)
        std::fill(cp, cp + m * n, T(0));
      else
        gemm<T>(false, false, m, n, k, T(1), ac.data(), k, bc.data(), n, T(0), cp, n);
    });
    return c;
  });
}

// The GEMM wrapper's whole contract, for tests of either single-precision kernel:
// alpha * op(a) * op(b) + beta * c, in a new array.
py::object py_gemm(py::handle a, py::handle b, py::handle c, bool trans_a, bool trans_b,
                   double alpha, double beta) {
  const char* op = "_gemm";
  Operands ops(op);
  auto aa = ops.add("a", a);
  auto ba = ops.add("b", b);
  auto ca = ops.add("c", c);
  check_ndim(op, "a", shape_of(aa), 2, "(M, K) or (K, M)");
  check_ndim(op, "b", shape_of(ba), 2, "(K, N) or (N, K)");
  const int64_t m = aa.shape(trans_a ? 1 : 0), k = aa.shape(trans_a ? 0 : 1);
  const int64_t n = ba.shape(trans_b ? 0 : 1);
  check_shape(op, "b", shape_of(ba), trans_b ? Shape{n, k} : Shape{k, n});
  check_shape(op, "c", shape_of(ca), Shape{m, n});
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto ac = contiguous<T>(aa);
    auto bc = contiguous<T>(ba);
    auto cc = contiguous<T>(ca);
    auto out = empty<T>({m, n});
    T* op_ = out.mutable_data();
    std::copy(cc.data(), cc.data() + m * n, op_);
    without_gil([&] {
      gemm<T>(trans_a, trans_b, m, n, k, T(alpha), ac.data(), trans_a ? m : k, bc.data(),
              trans_b ? k : n, T(beta), op_, n);
    });
    return out;
  });
}

// ---- Activations

// An elementwise op on any shape: kernel(x, y, n) over the C-contiguous data.
template <class F>
py::object elementwise(const char* op, py::handle x, F&& kernel) {
  Operands ops(op);
  auto xa = ops.add("input", x);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>(shape_of(xa));
    const T* xp = xc.data();
    T* yp = y.mutable_data();
    const int64_t n = xc.size();
    without_gil([&] {
      kernel(xp, yp, n);
    });
    return y;
  });
}

// The backward of an elementwise op: kernel(grad_output, other, grad_input, n), where
// other (the op's input or output) has grad_output's shape.
template <class F>
py::object elementwise_backward(const char* op, py::handle gy, const char* other_name,
                                py::handle other, F&& kernel) {
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto oa = ops.add(other_name, other);
  check_shape(op, "grad_output", shape_of(ga), shape_of(oa));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto oc = contiguous<T>(oa);
    auto gx = empty<T>(shape_of(oa));
    const T *gp = gc.data(), *other_p = oc.data();
    T* gxp = gx.mutable_data();
    const int64_t n = oc.size();
    without_gil([&] {
      kernel(gp, other_p, gxp, n);
    });
    return gx;
  });
}

py::object py_relu(py::handle x) {
  return elementwise("relu", x, [](const auto* x, auto* y, int64_t n) { relu_forward(x, y, n); });
}

py::object py_relu_backward(py::handle gy, py::handle x) {
  return elementwise_backward("relu_backward", gy, "input", x,
                              [](const auto* g, const auto* x, auto* gx, int64_t n) {
                                relu_backward(g, x, gx, n);
                              });
}

py::object py_sigmoid(py::handle x) {
  return elementwise("sigmoid", x,
                     [](const auto* x, auto* y, int64_t n) { sigmoid_forward(x, y, n); });
}

py::object py_sigmoid_backward(py::handle gy, py::handle y) {
  return elementwise_backward("sigmoid_backward", gy, "output", y,
                              [](const auto* g, const auto* y, auto* gx, int64_t n) {
                                sigmoid_backward(g, y, gx, n);
                              });
}

py::object py_tanh(py::handle x) {
  return elementwise("tanh", x, [](const auto* x, auto* y, int64_t n) { tanh_forward(x, y, n); });
}

py::object py_tanh_backward(py::handle gy, py::handle y) {
  return elementwise_backward("tanh_backward", gy, "output", y,
                              [](const auto* g, const auto* y, auto* gx, int64_t n) {
                                tanh_backward(g, y, gx, n);
                              });
}

// ---- Softmax and losses

py::object softmax_op(const char* op, py::handle x, int64_t dim, bool log) {
  Operands ops(op);
  auto xa = ops.add("input", x);
  const Shape s = shape_of(xa);
  const DimSplit d = split_at_dim(s, wrap_dim(op, dim, s.size()));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>(s);
    T* yp = y.mutable_data();
    without_gil([&] {
      softmax_forward<T>(xc.data(), yp, d, log);
    });
    return y;
  });
}

py::object softmax_backward_op(const char* op, py::handle gy, py::handle y, int64_t dim,
                               bool log) {
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto ya = ops.add("output", y);
  const Shape s = shape_of(ya);
  check_shape(op, "grad_output", shape_of(ga), s);
  const DimSplit d = split_at_dim(s, wrap_dim(op, dim, s.size()));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto yc = contiguous<T>(ya);
    auto gx = empty<T>(s);
    T* gxp = gx.mutable_data();
    without_gil([&] {
      softmax_backward<T>(gc.data(), yc.data(), gxp, d, log);
    });
    return gx;
  });
}

// Class indices of any integer dtype, as C-contiguous int64.
KernelArray<int64_t> class_indices(const char* op, py::handle target) {
  if (!py::isinstance<py::array>(target))
    raise_type(op, ": target: expected a numpy.ndarray of integer class indices, got ",
               std::string(py::str(py::type::of(target).attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(target);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    raise_type(op, ": target: expected an integer dtype of class indices, got ",
               std::string(py::str(a.dtype())));
  return ensure_layout<int64_t, kKernelLayout | py::array::forcecast>(a);
}

// Operands of cross_entropy and its backward: logits (N, C) and valid class indices.
struct CrossEntropyArgs {
  py::array logits;
  KernelArray<int64_t> target;
  Reduction reduction;
  int64_t n, c;
};

CrossEntropyArgs cross_entropy_args(const char* op, Operands& ops, py::handle x,
                                    py::handle target, const std::string& reduction) {
  auto xa = ops.add("input", x);
  auto ta = class_indices(op, target);
  const Reduction r = parse_reduction(op, reduction);
  check_cross_entropy(op, shape_of(xa), shape_of(ta));
  const int64_t n = xa.shape(0), c = xa.shape(1);
  check_class_indices(op, "target", ta.data(), n, c);
  return {xa, ta, r, n, c};
}

// A reduced loss is a 0-d array of the input's dtype, as torch returns a 0-d tensor.
template <class T>
py::array_t<T> loss_array(Reduction r, const Shape& unreduced) {
  return empty<T>(r == Reduction::none ? unreduced : Shape{});
}

py::object py_cross_entropy(py::handle x, py::handle target, const std::string& reduction) {
  const char* op = "cross_entropy";
  Operands ops(op);
  auto a = cross_entropy_args(op, ops, x, target, reduction);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(a.logits);
    auto out = loss_array<T>(a.reduction, {a.n});
    T* outp = out.mutable_data();
    without_gil([&] {
      cross_entropy_forward<T>(xc.data(), a.target.data(), a.n, a.c, a.reduction, outp);
    });
    return out;
  });
}

py::object py_cross_entropy_backward(py::handle x, py::handle target,
                                     const std::string& reduction) {
  const char* op = "cross_entropy_backward";
  Operands ops(op);
  auto a = cross_entropy_args(op, ops, x, target, reduction);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(a.logits);
    auto g = empty<T>({a.n, a.c});
    T* gp = g.mutable_data();
    without_gil([&] {
      cnnkit::cross_entropy_backward<T>(xc.data(), a.target.data(), a.n, a.c, a.reduction, gp);
    });
    return g;
  });
}

template <bool Backward>
py::object mse_loss_op(const char* op, py::handle x, py::handle target,
                       const std::string& reduction) {
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto ta = ops.add("target", target);
  const Shape s = shape_of(xa);
  check_shape(op, "target", shape_of(ta), s);
  const Reduction r = parse_reduction(op, reduction);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto tc = contiguous<T>(ta);
    auto out = Backward ? empty<T>(s) : loss_array<T>(r, s);
    T* outp = out.mutable_data();
    const int64_t n = xc.size();
    without_gil([&] {
      if (Backward)
        mse_loss_backward<T>(xc.data(), tc.data(), n, r, outp);
      else
        mse_loss_forward<T>(xc.data(), tc.data(), n, r, outp);
    });
    return out;
  });
}

// ---- Normalisation

// A seed as a 64-bit unsigned integer: any Python or NumPy integer in [0, 2**64).
uint64_t seed_value(const char* op, py::handle seed) {
  if (PyBool_Check(seed.ptr()) || !PyIndex_Check(seed.ptr()))
    raise_type(op, ": seed: expected an int, got ",
               std::string(py::str(py::type::of(seed).attr("__name__"))));
  auto index = py::reinterpret_steal<py::object>(PyNumber_Index(seed.ptr()));
  if (!index) throw py::error_already_set();
  const unsigned long long v = PyLong_AsUnsignedLongLong(index.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    raise_value(op, ": seed: expected an int in [0, 2**64), got ", std::string(py::str(seed)));
  }
  return v;
}

// Returns (y, mask): mask is a bool array, True where x was kept; in eval mode y is a
// copy of x and mask is None.
py::object py_dropout(py::handle x, double p, bool training, py::handle seed) {
  const char* op = "dropout";
  Operands ops(op);
  auto xa = ops.add("input", x);
  check_dropout_p(op, p);
  const uint64_t s = training ? seed_value(op, seed) : 0;
  const Shape shape = shape_of(xa);
  return ops.dispatch([&](auto tag) -> py::tuple {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>(shape);
    const T* xp = xc.data();
    T* yp = y.mutable_data();
    const int64_t n = xc.size();
    if (!training) {
      std::copy(xp, xp + n, yp);
      return py::make_tuple(y, py::none());
    }
    auto mask = empty<bool>(shape);
    auto* kp = reinterpret_cast<uint8_t*>(mask.mutable_data());
    without_gil([&] {
      dropout_forward<T>(xp, yp, kp, n, p, s);
    });
    return py::make_tuple(y, mask);
  });
}

py::object py_dropout_backward(py::handle gy, py::handle mask, double p) {
  const char* op = "dropout_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  check_dropout_p(op, p);
  std::optional<KernelArray<bool>> kc;
  if (!mask.is_none()) {
    if (!py::isinstance<py::array>(mask) ||
        !py::reinterpret_borrow<py::array>(mask).dtype().is(py::dtype::of<bool>()))
      raise_type(op, ": mask: expected the bool array (or None) that dropout returned, got ",
                 py::isinstance<py::array>(mask)
                     ? "dtype " + std::string(py::str(py::reinterpret_borrow<py::array>(mask).dtype()))
                     : std::string(py::str(py::type::of(mask).attr("__name__"))));
    auto ma = py::reinterpret_borrow<py::array>(mask);
    check_shape(op, "mask", shape_of(ma), shape_of(ga));
    kc = ensure_layout<bool>(ma);
  }
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto gx = empty<T>(shape_of(ga));
    const T* gp = gc.data();
    T* gxp = gx.mutable_data();
    const int64_t n = gc.size();
    without_gil([&] {
      if (kc)
        dropout_backward<T>(gp, reinterpret_cast<const uint8_t*>(kc->data()), gxp, n, p);
      else
        std::copy(gp, gp + n, gxp);  // eval mode: dropout was the identity
    });
    return gx;
  });
}

// Running stats are updated in place, so in training they must be the caller's own
// writeable C-contiguous arrays: a converted copy would take the update and be lost.
void check_in_place(const char* op, const char* name, const std::optional<py::array>& a) {
  if (!a) return;
  const bool aligned = a->flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if (!(a->flags() & py::array::c_style) || !aligned || !a->writeable())
    raise_value(op, ": ", name,
                ": expected a writeable, aligned C-contiguous array (it is updated in place), got ",
                !a->writeable() ? "a read-only array"
                : !aligned      ? "a misaligned array"
                                : "a non-contiguous array");
}

// Returns (y, input, mean, invstd): the C-contiguous input and the float64 statistics
// used, which batch_norm_backward needs.
py::object py_batch_norm(py::handle x, py::handle gamma, py::handle beta, py::handle running_mean,
                         py::handle running_var, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  Operands ops(op);
  auto xa = ops.add("input", x);
  auto ga = ops.add_optional("gamma", gamma);
  auto ba = ops.add_optional("beta", beta);
  auto rma = ops.add_optional("running_mean", running_mean);
  auto rva = ops.add_optional("running_var", running_var);
  Shape gs = ga ? shape_of(*ga) : Shape{}, bs = ba ? shape_of(*ba) : Shape{};
  Shape ms = rma ? shape_of(*rma) : Shape{}, vs = rva ? shape_of(*rva) : Shape{};
  const DimSplit d = check_batch_norm(op, shape_of(xa), ga ? &gs : nullptr, ba ? &bs : nullptr,
                                      rma ? &ms : nullptr, rva ? &vs : nullptr, training, eps);
  if (training) {
    check_in_place(op, "running_mean", rma);
    check_in_place(op, "running_var", rva);
  }
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto gc = contiguous<T>(ga);
    auto bc = contiguous<T>(ba);
    // Checked above to be the caller's arrays in training; in eval they are only read.
    auto rmc = contiguous<T>(rma);
    auto rvc = contiguous<T>(rva);
    T* rmp = rmc ? const_cast<T*>(rmc->data()) : nullptr;
    T* rvp = rvc ? const_cast<T*>(rvc->data()) : nullptr;
    auto y = empty<T>(shape_of(xa));
    auto mean = empty<double>({d.size});
    auto invstd = empty<double>({d.size});
    T* yp = y.mutable_data();
    double *mp = mean.mutable_data(), *ip = invstd.mutable_data();
    without_gil([&] {
      batch_norm_forward<T>(xc.data(), cptr<T>(gc), cptr<T>(bc), rmp, rvp, yp, mp, ip, d,
                            training, momentum, eps);
    });
    return py::make_tuple(y, xc, mean, invstd);
  });
}

// mean and invstd come from py_batch_norm; has_beta says whether to return grad_beta.
py::object py_batch_norm_backward(py::handle gy, py::handle x, py::handle gamma, py::handle mean,
                                  py::handle invstd, bool training, bool has_beta) {
  const char* op = "batch_norm_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  auto wa = ops.add_optional("gamma", gamma);
  Shape ws = wa ? shape_of(*wa) : Shape{};
  const DimSplit d = check_batch_norm_input(op, shape_of(xa), wa ? &ws : nullptr, nullptr);
  check_shape(op, "grad_output", shape_of(ga), shape_of(xa));
  auto stats = [&](const char* name, py::handle a) {
    auto c = py::array_t<double, kKernelLayout | py::array::forcecast>::ensure(a);
    if (!c) raise_type(op, ": ", name, ": expected a float64 array from batch_norm");
    check_shape(op, name, shape_of(c), {d.size});
    return c;
  };
  auto mc = stats("saved.mean", mean);
  auto ic = stats("saved.invstd", invstd);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto gx = empty<T>(shape_of(xa));
    std::optional<py::array_t<T>> gw, gb;
    if (wa) gw = empty<T>({d.size});
    if (has_beta) gb = empty<T>({d.size});
    T* gxp = gx.mutable_data();
    T* gwp = gw ? gw->mutable_data() : nullptr;
    T* gbp = gb ? gb->mutable_data() : nullptr;
    without_gil([&] {
      cnnkit::batch_norm_backward<T>(gc.data(), xc.data(), cptr<T>(wc), mc.data(), ic.data(), gxp,
                                     gwp, gbp, d, training);
    });
    return py::make_tuple(gx, gw ? py::object(*gw) : py::none(), gb ? py::object(*gb) : py::none());
  });
}

py::object py_local_response_norm(py::handle x, int64_t size, double alpha, double beta,
                                  double k) {
  const char* op = "local_response_norm";
  Operands ops(op);
  auto xa = ops.add("input", x);
  const DimSplit d = check_local_response_norm(op, shape_of(xa), size);
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto xc = contiguous<T>(xa);
    auto y = empty<T>(shape_of(xa));
    T* yp = y.mutable_data();
    without_gil([&] {
      local_response_norm_forward<T>(xc.data(), yp, d, size, alpha, beta, k);
    });
    return y;
  });
}

py::object py_local_response_norm_backward(py::handle gy, py::handle x, int64_t size,
                                           double alpha, double beta, double k) {
  const char* op = "local_response_norm_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  const DimSplit d = check_local_response_norm(op, shape_of(xa), size);
  check_shape(op, "grad_output", shape_of(ga), shape_of(xa));
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto xc = contiguous<T>(xa);
    auto gx = empty<T>(shape_of(xa));
    T* gxp = gx.mutable_data();
    without_gil([&] {
      cnnkit::local_response_norm_backward<T>(gc.data(), xc.data(), gxp, d, size, alpha, beta, k);
    });
    return gx;
  });
}

// Argument checks of the formulas exposed on their own: the validators check these
// for the ops, and a zero stride would divide by zero.
using NamedValues = std::initializer_list<std::pair<const char*, int64_t>>;
void check_formula_args(const char* op, NamedValues non_negative, NamedValues positive) {
  for (const auto& [name, v] : non_negative)
    if (v < 0) raise_value(op, ": ", name, ": expected a non-negative integer, got ", v);
  for (const auto& [name, v] : positive)
    if (v < 1) raise_value(op, ": ", name, ": expected a positive integer, got ", v);
}

template <class Formula>
int64_t formula_result(const char* op, Formula&& formula) {
  int64_t out;
  if (const char* arg = formula(&out))
    raise_value(op, ": ", arg, ": expected a value for which the result fits in int64, got one "
                "that overflows it");
  return out;
}

// ---- Checks and geometry for the CUDA backend: the validators of common/validate.h
// on shapes (and dtypes), returning what they derive, so that every backend raises the
// same errors and no backend re-derives a shape.

std::string type_name(const py::handle& type) {
  return std::string(py::str(type.attr("__module__"))) + "." +
         std::string(py::str(type.attr("__name__")));
}

// operands: (name, array) pairs, arrays of array_type (e.g. cupy.ndarray); those named in
// optional may be None (absent). Returns the common dtype's name, or None when every
// operand is absent.
py::object py_check_float_operands(const std::string& op,
                                   const std::vector<std::pair<std::string, py::object>>& operands,
                                   const py::handle& array_type,
                                   const std::vector<std::string>& optional) {
  Operands ops(op.c_str());
  for (const auto& [name, obj] : operands) {
    if (obj.is_none() && std::find(optional.begin(), optional.end(), name) != optional.end())
      continue;
    if (!py::isinstance(obj, array_type))
      raise_type(op, ": ", name, ": expected a ", type_name(array_type),
                 " of float32 or float64, got ",
                 std::string(py::str(py::type::of(obj).attr("__name__"))));
    ops.add_dtype(name.c_str(), py::dtype::from_args(obj.attr("dtype")));
  }
  if (!ops.any()) return py::none();
  return py::str(ops.f64() ? "float64" : "float32");
}

py::dict conv_geometry_dict(const ConvGeometry& g) {
  py::dict d;
  d["n"] = g.n, d["c_in"] = g.c_in, d["h"] = g.h, d["w"] = g.w;
  d["c_out"] = g.c_out, d["ho"] = g.ho, d["wo"] = g.wo;
  d["kh"] = g.kh, d["kw"] = g.kw, d["sh"] = g.sh, d["sw"] = g.sw;
  d["ph"] = g.ph, d["pw"] = g.pw, d["dh"] = g.dh, d["dw"] = g.dw;
  d["groups"] = g.groups;
  return d;
}

py::dict pool_geometry_dict(const PoolGeometry& g) {
  py::dict d;
  d["n"] = g.n, d["c"] = g.c, d["h"] = g.h, d["w"] = g.w, d["ho"] = g.ho, d["wo"] = g.wo;
  d["kh"] = g.kh, d["kw"] = g.kw, d["sh"] = g.sh, d["sw"] = g.sw;
  d["ph"] = g.ph, d["pw"] = g.pw, d["dh"] = g.dh, d["dw"] = g.dw;
  d["ceil_mode"] = g.ceil_mode;
  return d;
}

py::tuple split_tuple(const DimSplit& d) { return py::make_tuple(d.outer, d.size, d.inner); }

const Shape* opt(const std::optional<Shape>& s) { return s ? &*s : nullptr; }

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "cnnkit's compiled kernels. Use cnnkit.functional; this module is private.";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cnnkit::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const cnnkit::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  init_blas();

  m.def("conv2d", &py_conv2d, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_algorithm", &py_conv2d_algorithm, py::arg("input"), py::arg("weight"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("grad") = "");
  m.def("conv2d_backward", &py_conv2d_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("output_mask") = Mask3{true, true, true});
  m.def("conv_transpose2d_algorithm", &py_conv_transpose2d_algorithm, py::arg("input"),
        py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("output_padding"),
        py::arg("groups"), py::arg("dilation"), py::arg("grad") = "");
  m.def("conv_transpose2d", &py_conv_transpose2d, py::arg("input"), py::arg("weight"),
        py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("output_padding"),
        py::arg("groups"), py::arg("dilation"));
  m.def("conv_transpose2d_backward", &py_conv_transpose2d_backward, py::arg("grad_output"),
        py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
        py::arg("output_padding"), py::arg("groups"), py::arg("dilation"),
        py::arg("output_mask") = Mask3{true, true, true});
  m.def("linear", &py_linear, py::arg("input"), py::arg("weight"), py::arg("bias"));
  m.def("linear_backward", &py_linear_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"));

  // ---- Pooling
  m.def("max_pool2d", &py_max_pool2d, py::arg("input"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"),
        py::arg("return_indices"));
  m.def("max_pool2d_backward", &py_max_pool2d_backward, py::arg("grad_output"),
        py::arg("switches"), py::arg("input_shape"));
  m.def("max_unpool2d", &py_max_unpool2d, py::arg("input"), py::arg("switches"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("output_size"));
  m.def("max_unpool2d_backward", &py_max_unpool2d_backward, py::arg("grad_output"),
        py::arg("switches"));
  m.def("avg_pool2d", &py_avg_pool2d, py::arg("input"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
        py::arg("count_include_pad"));
  m.def("avg_pool2d_backward", &py_avg_pool2d_backward, py::arg("grad_output"),
        py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("ceil_mode"), py::arg("count_include_pad"));
  m.def("lp_pool2d", &py_lp_pool2d, py::arg("input"), py::arg("norm_type"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("ceil_mode"));
  m.def("lp_pool2d_backward", &py_lp_pool2d_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("norm_type"), py::arg("kernel_size"), py::arg("stride"), py::arg("ceil_mode"));

  m.def("matmul", &py_matmul, py::arg("a"), py::arg("b"));
  m.def("_gemm", &py_gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a"),
        py::arg("trans_b"), py::arg("alpha"), py::arg("beta"));

  // The output-size formulas, for Python and the CUDA backend; arguments are checked
  // here as the validators check them, and an overflow raises ValueError naming the argument.
  m.def(
      "conv_out_size",
      [](int64_t size, int64_t kernel, int64_t stride, int64_t pad_begin, int64_t pad_end,
         int64_t dilation) {
        const char* op = "conv_out_size";
        check_formula_args(op, {{"size", size}, {"pad_begin", pad_begin}, {"pad_end", pad_end}},
                           {{"kernel", kernel}, {"stride", stride}, {"dilation", dilation}});
        return formula_result(op, [&](int64_t* out) {
          return conv_out_size(size, kernel, stride, pad_begin, pad_end, dilation, out);
        });
      },
      py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("pad_begin"),
      py::arg("pad_end"), py::arg("dilation"));
  m.def(
      "conv_transpose_out_size",
      [](int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t output_padding,
         int64_t dilation) {
        const char* op = "conv_transpose_out_size";
        check_formula_args(op,
                           {{"size", size}, {"padding", padding}, {"output_padding", output_padding}},
                           {{"kernel", kernel}, {"stride", stride}, {"dilation", dilation}});
        return formula_result(op, [&](int64_t* out) {
          return conv_transpose_out_size(size, kernel, stride, padding, output_padding, dilation,
                                         out);
        });
      },
      py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("output_padding"), py::arg("dilation"));
  m.def(
      "pool_out_size",
      [](int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
         bool ceil_mode) {
        const char* op = "pool_out_size";
        check_formula_args(op, {{"size", size}, {"padding", padding}},
                           {{"kernel", kernel}, {"stride", stride}, {"dilation", dilation}});
        return formula_result(op, [&](int64_t* out) {
          return pool_out_size(size, kernel, stride, padding, dilation, ceil_mode, out);
        });
      },
      py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ceil_mode"));

  m.def("get_num_threads", &get_num_threads);
  // The pool and GEMM for the Cython modules (csrc/common/c_abi.h).
  m.attr("_c_abi") = py::capsule(static_cast<const void*>(cnnkit_get_c_abi()), CNNKIT_C_ABI_NAME);
  m.def(
      "set_num_threads",
      [](int64_t n) {
        if (n < 1 || n > 1024)
          raise_value("set_num_threads: n: expected an integer in [1, 1024], got ", n);
        without_gil([&] { set_num_threads(static_cast<int>(n)); });
      },
      py::arg("n"));
  m.def("get_workspace_bytes", &get_workspace_bytes);
  m.def("free_kept_output_blocks", &free_kept_output_blocks,
        "Frees the kept blocks of freed large outputs (common/output_blocks.h).");
  m.def("kept_output_bytes", &kept_output_bytes, "Bytes of freed large outputs' blocks kept for reuse.");
  m.def(
      "set_workspace_bytes",
      [](int64_t bytes) {
        if (bytes < 1)
          raise_value("set_workspace_bytes: bytes: expected a positive integer, got ", bytes);
        set_workspace_bytes(bytes);
      },
      py::arg("bytes"));
  m.def("simd_level", &simd_level);
  m.def("blas_config", [] { return std::string(blas_config()); });
  m.def(
      "set_sgemm_kernel",
      [](const std::string& name) {
        if (name != "auto" && name != "openblas")
          raise_value("set_sgemm_kernel: kernel: expected 'auto' or 'openblas', got '", name, "'");
        set_sgemm_kernel(name == "auto" ? SgemmKernel::automatic : SgemmKernel::openblas);
      },
      py::arg("kernel"));
  m.def("get_sgemm_kernel", [] { return std::string(sgemm_kernel()); });

  m.def("relu", &py_relu, py::arg("input"));
  m.def("relu_backward", &py_relu_backward, py::arg("grad_output"), py::arg("input"));
  m.def("sigmoid", &py_sigmoid, py::arg("input"));
  m.def("sigmoid_backward", &py_sigmoid_backward, py::arg("grad_output"), py::arg("output"));
  m.def("tanh", &py_tanh, py::arg("input"));
  m.def("tanh_backward", &py_tanh_backward, py::arg("grad_output"), py::arg("output"));

  m.def(
      "softmax", [](py::handle x, int64_t dim) { return softmax_op("softmax", x, dim, false); },
      py::arg("input"), py::arg("dim"));
  m.def(
      "log_softmax",
      [](py::handle x, int64_t dim) { return softmax_op("log_softmax", x, dim, true); },
      py::arg("input"), py::arg("dim"));
  m.def(
      "softmax_backward",
      [](py::handle gy, py::handle y, int64_t dim) {
        return softmax_backward_op("softmax_backward", gy, y, dim, false);
      },
      py::arg("grad_output"), py::arg("output"), py::arg("dim"));
  m.def(
      "log_softmax_backward",
      [](py::handle gy, py::handle y, int64_t dim) {
        return softmax_backward_op("log_softmax_backward", gy, y, dim, true);
      },
      py::arg("grad_output"), py::arg("output"), py::arg("dim"));
  m.def("cross_entropy", &py_cross_entropy, py::arg("input"), py::arg("target"),
        py::arg("reduction"));
  m.def("cross_entropy_backward", &py_cross_entropy_backward, py::arg("input"),
        py::arg("target"), py::arg("reduction"));
  m.def(
      "mse_loss",
      [](py::handle x, py::handle t, const std::string& r) {
        return mse_loss_op<false>("mse_loss", x, t, r);
      },
      py::arg("input"), py::arg("target"), py::arg("reduction"));
  m.def(
      "mse_loss_backward",
      [](py::handle x, py::handle t, const std::string& r) {
        return mse_loss_op<true>("mse_loss_backward", x, t, r);
      },
      py::arg("input"), py::arg("target"), py::arg("reduction"));

  m.def("dropout", &py_dropout, py::arg("input"), py::arg("p"), py::arg("training"),
        py::arg("seed"));
  m.def("dropout_backward", &py_dropout_backward, py::arg("grad_output"), py::arg("mask"),
        py::arg("p"));
  m.def("batch_norm", &py_batch_norm, py::arg("input"), py::arg("gamma"), py::arg("beta"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("training"),
        py::arg("momentum"), py::arg("eps"));
  m.def("batch_norm_backward", &py_batch_norm_backward, py::arg("grad_output"),
        py::arg("input"), py::arg("gamma"), py::arg("mean"), py::arg("invstd"),
        py::arg("training"), py::arg("has_beta"));
  m.def("local_response_norm", &py_local_response_norm, py::arg("input"), py::arg("size"),
        py::arg("alpha"), py::arg("beta"), py::arg("k"));
  m.def("local_response_norm_backward", &py_local_response_norm_backward,
        py::arg("grad_output"), py::arg("input"), py::arg("size"), py::arg("alpha"),
        py::arg("beta"), py::arg("k"));

  // ---- Checks and geometry for the CUDA backend (see the helpers above)
  m.def("check_float_operands", &py_check_float_operands, py::arg("op"), py::arg("operands"),
        py::arg("array_type"), py::arg("optional") = std::vector<std::string>{});
  m.def(
      "check_shape",
      [](const std::string& op, const std::string& name, const Shape& got, const Shape& expected) {
        check_shape(op.c_str(), name.c_str(), got, expected);
      },
      py::arg("op"), py::arg("name"), py::arg("got"), py::arg("expected"));
  m.def(
      "conv2d_geometry",
      [](const std::string& op, const Shape& x, const Shape& w, const std::optional<Shape>& b,
         P2 stride, P4 pad, P2 dil, int64_t groups) {
        return conv_geometry_dict(conv2d_geometry(op.c_str(), x, w, opt(b), pair(stride),
                                                  {pad[0], pad[1], pad[2], pad[3]}, pair(dil),
                                                  groups));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("weight_shape"), py::arg("bias_shape"),
      py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def(
      "conv_transpose2d_geometry",
      [](const std::string& op, const Shape& x, const Shape& w, const std::optional<Shape>& b,
         P2 stride, P2 pad, P2 out_pad, int64_t groups, P2 dil) {
        return conv_geometry_dict(conv_transpose2d_geometry(op.c_str(), x, w, opt(b),
                                                            pair(stride), pair(pad),
                                                            pair(out_pad), groups, pair(dil)));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("weight_shape"), py::arg("bias_shape"),
      py::arg("stride"), py::arg("padding"), py::arg("output_padding"), py::arg("groups"),
      py::arg("dilation"));
  m.def(
      "check_linear",
      [](const std::string& op, const Shape& x, const Shape& w, const std::optional<Shape>& b) {
        check_linear(op.c_str(), x, w, opt(b));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("weight_shape"), py::arg("bias_shape"));
  m.def(
      "pool2d_geometry",
      [](const std::string& op, const Shape& x, P2 kernel, P2 stride, P2 pad, P2 dil,
         bool ceil_mode) {
        return pool_geometry_dict(pool2d_geometry(op.c_str(), x, pair(kernel), pair(stride),
                                                  pair(pad), pair(dil), ceil_mode));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"));
  m.def(
      "pool2d_input_shape",
      [](const std::string& op, const std::vector<int64_t>& input_shape) {
        const Shape s = pool2d_input_shape(op.c_str(), input_shape);
        return py::tuple(py::cast(s));
      },
      py::arg("op"), py::arg("input_shape"));
  m.def(
      "switches_geometry",
      [](const std::string& op, const std::string& pooled_name, const Shape& pooled,
         const std::string& full_name, const Shape& full) {
        return pool_geometry_dict(
            switches_geometry(op.c_str(), pooled_name.c_str(), pooled, full_name.c_str(), full));
      },
      py::arg("op"), py::arg("pooled_name"), py::arg("pooled_shape"), py::arg("full_name"),
      py::arg("full_shape"));
  m.def(
      "max_unpool2d_geometry",
      [](const std::string& op, const Shape& x, P2 kernel, P2 stride, P2 pad,
         const std::optional<std::vector<int64_t>>& output_size) {
        return pool_geometry_dict(max_unpool2d_geometry(op.c_str(), x, pair(kernel),
                                                        pair(stride), pair(pad),
                                                        output_size ? &*output_size : nullptr));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("output_size"));
  m.def(
      "check_switch",
      [](const std::string& op, const Shape& switches, int64_t position, int64_t value,
         int64_t plane) { check_switch(op.c_str(), switches, position, value, plane); },
      py::arg("op"), py::arg("switches_shape"), py::arg("position"), py::arg("value"),
      py::arg("plane"));
  m.def(
      "check_norm_type",
      [](const std::string& op, double norm_type) { check_norm_type(op.c_str(), norm_type); },
      py::arg("op"), py::arg("norm_type"));
  m.def(
      "wrap_dim",
      [](const std::string& op, int64_t dim, size_t ndim) {
        return wrap_dim(op.c_str(), dim, ndim);
      },
      py::arg("op"), py::arg("dim"), py::arg("ndim"));
  m.def(
      "split_at_dim",
      [](const Shape& shape, int64_t dim) {
        if (!shape.empty() && (dim < 0 || dim >= static_cast<int64_t>(shape.size())))
          raise_value("split_at_dim: dim: expected a wrapped dim in [0, ", shape.size(),
                      "), got ", dim);
        return split_tuple(split_at_dim(shape, dim));
      },
      py::arg("shape"), py::arg("dim"));
  m.def(
      "parse_reduction",
      [](const std::string& op, const std::string& reduction) {
        switch (parse_reduction(op.c_str(), reduction)) {
          case Reduction::none: return "none";
          case Reduction::sum: return "sum";
          default: return "mean";
        }
      },
      py::arg("op"), py::arg("reduction"));
  m.def(
      "check_cross_entropy",
      [](const std::string& op, const Shape& logits, const Shape& target) {
        check_cross_entropy(op.c_str(), logits, target);
      },
      py::arg("op"), py::arg("input_shape"), py::arg("target_shape"));
  m.def(
      "check_class_indices",
      [](const std::string& op, const std::string& name, const KernelArray<int64_t>& target,
         int64_t classes) {
        check_class_indices(op.c_str(), name.c_str(), target.data(), target.size(), classes);
      },
      py::arg("op"), py::arg("name"), py::arg("target"), py::arg("classes"));
  m.def(
      "check_dropout_p", [](const std::string& op, double p) { check_dropout_p(op.c_str(), p); },
      py::arg("op"), py::arg("p"));
  m.def(
      "check_batch_norm_input",
      [](const std::string& op, const Shape& x, const std::optional<Shape>& gamma,
         const std::optional<Shape>& beta) {
        return split_tuple(check_batch_norm_input(op.c_str(), x, opt(gamma), opt(beta)));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("gamma_shape"), py::arg("beta_shape"));
  m.def(
      "check_batch_norm",
      [](const std::string& op, const Shape& x, const std::optional<Shape>& gamma,
         const std::optional<Shape>& beta, const std::optional<Shape>& running_mean,
         const std::optional<Shape>& running_var, bool training, double eps) {
        return split_tuple(check_batch_norm(op.c_str(), x, opt(gamma), opt(beta),
                                            opt(running_mean), opt(running_var), training, eps));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("gamma_shape"), py::arg("beta_shape"),
      py::arg("running_mean_shape"), py::arg("running_var_shape"), py::arg("training"),
      py::arg("eps"));
  m.def(
      "check_local_response_norm",
      [](const std::string& op, const Shape& x, int64_t size) {
        return split_tuple(check_local_response_norm(op.c_str(), x, size));
      },
      py::arg("op"), py::arg("input_shape"), py::arg("size"));
}
