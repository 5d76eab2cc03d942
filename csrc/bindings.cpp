// The only file that knows about pybind11: converts and checks Python operands,
// releases the GIL and calls the kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include "common/cpu_features.h"
#include "common/errors.h"
#include "common/gemm.h"
#include "common/shapes.h"
#include "common/threading.h"
#include "common/validate.h"
#include "conv.h"

namespace py = pybind11;
using namespace cnnkit;

namespace {

using P2 = std::array<int64_t, 2>;
using P4 = std::array<int64_t, 4>;

Pair pair(const P2& p) { return {p[0], p[1]}; }

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
    const bool f32 = a.dtype().is(py::dtype::of<float>());
    const bool f64 = a.dtype().is(py::dtype::of<double>());
    if (!f32 && !f64)
      raise_type(op_, ": ", name, ": expected dtype float32 or float64, got ",
                 std::string(py::str(a.dtype())));
    if (!first_) {
      first_ = name;
      f64_ = f64;
    } else if (f64 != f64_) {
      raise_type(op_, ": ", name, ": expected dtype ", f64_ ? "float64" : "float32",
                 " to match ", first_, ", got ", std::string(py::str(a.dtype())));
    }
    return a;
  }

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

template <class T>
py::array_t<T, py::array::c_style> contiguous(const py::array& a) {
  return py::array_t<T, py::array::c_style>::ensure(a);
}

template <class T>
const T* cptr(const std::optional<py::array_t<T, py::array::c_style>>& a) {
  return a ? a->data() : nullptr;
}

template <class T>
py::array_t<T> empty(const Shape& s) {
  return py::array_t<T>(std::vector<py::ssize_t>(s.begin(), s.end()));
}

template <class T>
std::optional<py::array_t<T, py::array::c_style>> contiguous(const std::optional<py::array>& a) {
  if (!a) return std::nullopt;
  return contiguous<T>(*a);
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
    {
      py::gil_scoped_release release;
      conv2d_forward<T>(xc.data(), wc.data(), cptr<T>(bc), yp, g);
    }
    return y;
  });
}

py::object py_conv2d_backward(py::handle gy, py::handle x, py::handle w, P2 stride, P4 pad, P2 dil,
                           int64_t groups) {
  const char* op = "conv2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto g = conv2d_geometry(op, shape_of(xa), shape_of(wa), nullptr, pair(stride),
                           {pad[0], pad[1], pad[2], pad[3]}, pair(dil), groups);
  check_shape(op, "grad_output", shape_of(ga), {g.n, g.c_out, g.ho, g.wo});
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto gx = empty<T>(shape_of(xa));
    auto gw = empty<T>(shape_of(wa));
    auto gb = empty<T>({g.c_out});
    T *gxp = gx.mutable_data(), *gwp = gw.mutable_data(), *gbp = gb.mutable_data();
    {
      py::gil_scoped_release release;
      cnnkit::conv2d_backward<T>(gc.data(), xc.data(), wc.data(), gxp, gwp, gbp, g);
    }
    return py::make_tuple(gx, gw, gb);
  });
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
    {
      py::gil_scoped_release release;
      conv_transpose2d_forward<T>(xc.data(), wc.data(), cptr<T>(bc), yp, g);
    }
    return y;
  });
}

py::object py_conv_transpose2d_backward(py::handle gy, py::handle x, py::handle w, P2 stride,
                                     P2 pad, P2 out_pad, int64_t groups, P2 dil) {
  const char* op = "conv_transpose2d_backward";
  Operands ops(op);
  auto ga = ops.add("grad_output", gy);
  auto xa = ops.add("input", x);
  auto wa = ops.add("weight", w);
  auto g = conv_transpose2d_geometry(op, shape_of(xa), shape_of(wa), nullptr, pair(stride),
                                     pair(pad), pair(out_pad), groups, pair(dil));
  check_shape(op, "grad_output", shape_of(ga), {g.n, g.c_in, g.h, g.w});
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto gx = empty<T>(shape_of(xa));
    auto gw = empty<T>(shape_of(wa));
    auto gb = empty<T>({g.c_in});
    T *gxp = gx.mutable_data(), *gwp = gw.mutable_data(), *gbp = gb.mutable_data();
    {
      py::gil_scoped_release release;
      cnnkit::conv_transpose2d_backward<T>(gc.data(), xc.data(), wc.data(), gxp, gwp, gbp, g);
    }
    return py::make_tuple(gx, gw, gb);
  });
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
    {
      py::gil_scoped_release release;
      linear_forward<T>(xc.data(), wc.data(), cptr<T>(bc), yp, n, in, out);
    }
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
  return ops.dispatch([&](auto tag) {
    using T = typename decltype(tag)::type;
    auto gc = contiguous<T>(ga);
    auto xc = contiguous<T>(xa);
    auto wc = contiguous<T>(wa);
    auto gx = empty<T>({n, in});
    auto gw = empty<T>({out, in});
    auto gb = empty<T>({out});
    T *gxp = gx.mutable_data(), *gwp = gw.mutable_data(), *gbp = gb.mutable_data();
    {
      py::gil_scoped_release release;
      cnnkit::linear_backward<T>(gc.data(), xc.data(), wc.data(), gxp, gwp, gbp, n, in, out);
    }
    return py::make_tuple(gx, gw, gb);
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
    {
      py::gil_scoped_release release;
      if (k == 0)
        std::fill(cp, cp + m * n, T(0));
      else
        gemm<T>(false, false, m, n, k, T(1), ac.data(), k, bc.data(), n, T(0), cp, n);
    }
    return c;
  });
}

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

  set_blas_threads(get_num_threads());

  m.def("conv2d", &py_conv2d, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward", &py_conv2d_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"));
  m.def("conv_transpose2d", &py_conv_transpose2d, py::arg("input"), py::arg("weight"),
        py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("output_padding"),
        py::arg("groups"), py::arg("dilation"));
  m.def("conv_transpose2d_backward", &py_conv_transpose2d_backward, py::arg("grad_output"),
        py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
        py::arg("output_padding"), py::arg("groups"), py::arg("dilation"));
  m.def("linear", &py_linear, py::arg("input"), py::arg("weight"), py::arg("bias"));
  m.def("linear_backward", &py_linear_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"));

  m.def("matmul", &py_matmul, py::arg("a"), py::arg("b"));

  m.def("conv_out_size", &conv_out_size, py::arg("size"), py::arg("kernel"), py::arg("stride"),
        py::arg("pad_begin"), py::arg("pad_end"), py::arg("dilation"));
  m.def("conv_transpose_out_size", &conv_transpose_out_size, py::arg("size"), py::arg("kernel"),
        py::arg("stride"), py::arg("padding"), py::arg("output_padding"), py::arg("dilation"));
  m.def("pool_out_size", &pool_out_size, py::arg("size"), py::arg("kernel"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"));

  m.def("get_num_threads", &get_num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) raise_value("set_num_threads: n: expected a positive integer, got ", n);
        py::gil_scoped_release release;
        set_num_threads(n);
      },
      py::arg("n"));
  m.def("get_workspace_bytes", &get_workspace_bytes);
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
}
