#include "common/validate.h"

#include <algorithm>

#include "common/shapes.h"

namespace cnnkit {

namespace {
std::string pair_str(Pair p) {
  std::ostringstream os;
  os << "(" << p.h << ", " << p.w << ")";
  return os.str();
}

void check_groups(const char* op, int64_t groups, int64_t channels, const char* what) {
  if (groups < 1) raise_value(op, ": groups: expected a positive integer, got ", groups);
  if (channels % groups != 0)
    raise_value(op, ": groups: expected a divisor of ", what, "=", channels, ", got groups=",
                groups);
}

void check_bias(const char* op, const Shape* bias, int64_t c_out) {
  if (bias) check_shape(op, "bias", *bias, {c_out});
}

// Raises unless a formula's terms fit in int64 (arg names the argument they do not fit for).
void check_formula(const char* op, const char* arg) {
  if (arg)
    raise_value(op, ": ", arg, ": expected a value for which the output size fits in int64, got one "
                "that overflows it");
}

void check_fits(const char* op, const char* arg, const Shape& shape, const char* what) {
  int64_t bytes = 8;
  for (int64_t d : shape)
    if (!checked::mul(bytes, d, &bytes))
      raise_value(op, ": ", arg, ": expected a value that keeps ", what,
                  " within 2**63 bytes, got one that makes it ", shape_str(shape));
}
}  // namespace

void check_ndim(const char* op, const char* name, const Shape& s, size_t ndim,
                const char* layout) {
  if (s.size() != ndim)
    raise_value(op, ": ", name, ": expected a ", ndim, "-D array ", layout, ", got ", s.size(),
                "-D shape ", shape_str(s));
}

void check_shape(const char* op, const char* name, const Shape& got, const Shape& expected) {
  if (got != expected)
    raise_value(op, ": ", name, ": expected shape ", shape_str(expected), ", got ",
                shape_str(got));
}

void check_positive(const char* op, const char* name, Pair v) {
  if (v.h <= 0 || v.w <= 0)
    raise_value(op, ": ", name, ": expected positive values, got ", pair_str(v));
}

void check_non_negative(const char* op, const char* name, Pair v) {
  if (v.h < 0 || v.w < 0)
    raise_value(op, ": ", name, ": expected non-negative values, got ", pair_str(v));
}

ConvGeometry conv2d_geometry(const char* op, const Shape& x, const Shape& weight, const Shape* bias, Pair stride,
                             Padding pad, Pair dilation, int64_t groups) {
  check_ndim(op, "input", x, 4, "(N, C_in, H, W)");
  check_ndim(op, "weight", weight, 4, "(C_out, C_in/groups, kH, kW)");
  check_positive(op, "stride", stride);
  check_positive(op, "dilation", dilation);
  check_non_negative(op, "padding", {pad.top, pad.left});
  check_non_negative(op, "padding", {pad.bottom, pad.right});
  check_groups(op, groups, x[1], "in_channels");
  check_groups(op, groups, weight[0], "out_channels (weight.shape[0])");
  if (weight[1] * groups != x[1])
    raise_value(op, ": weight: expected C_in/groups = ", x[1] / groups,
                " input channels in weight.shape[1] (input has ", x[1],
                " channels, groups=", groups, "), got weight shape ", shape_str(weight));
  if (weight[2] < 1 || weight[3] < 1)
    raise_value(op, ": weight: expected a non-empty kernel, got shape ", shape_str(weight));
  check_bias(op, bias, weight[0]);
  ConvGeometry g{x[0],     x[1],      x[2],   x[3],     weight[0],  0,       0,
                 weight[2], weight[3], stride.h, stride.w, pad.top, pad.left, dilation.h,
                 dilation.w, groups};
  check_formula(op, conv_out_size(g.h, g.kh, g.sh, pad.top, pad.bottom, g.dh, &g.ho));
  check_formula(op, conv_out_size(g.w, g.kw, g.sw, pad.left, pad.right, g.dw, &g.wo));
  if (g.ho < 1 || g.wo < 1) {
    int64_t eh, ew;
    dilated_extent(g.kh, g.dh, &eh);
    dilated_extent(g.kw, g.dw, &ew);
    raise_value(op, ": weight: dilated kernel size ", pair_str({eh, ew}),
                " is larger than the padded input ",
                pair_str({g.h + pad.top + pad.bottom, g.w + pad.left + pad.right}));
  }
  // The output and the full im2col matrix must be addressable (outputs only grow past
  // the input through padding).
  check_fits(op, "padding", {g.n, g.c_out, g.ho, g.wo}, "the output");
  check_fits(op, "padding", {g.c_in_g(), g.kh, g.kw, g.ho, g.wo}, "the lowered input (im2col)");
  return g;
}

ConvGeometry conv_transpose2d_geometry(const char* op, const Shape& x, const Shape& weight, const Shape* bias,
                                       Pair stride, Pair pad, Pair output_padding,
                                       int64_t groups, Pair dilation) {
  check_ndim(op, "input", x, 4, "(N, C_in, H, W)");
  check_ndim(op, "weight", weight, 4, "(C_in, C_out/groups, kH, kW)");
  check_positive(op, "stride", stride);
  check_positive(op, "dilation", dilation);
  check_non_negative(op, "padding", pad);
  check_non_negative(op, "output_padding", output_padding);
  if ((output_padding.h >= stride.h && output_padding.h >= dilation.h) ||
      (output_padding.w >= stride.w && output_padding.w >= dilation.w))
    raise_value(op, ": output_padding: expected values smaller than stride ", pair_str(stride),
                " or dilation ", pair_str(dilation), ", got ", pair_str(output_padding));
  check_groups(op, groups, x[1], "in_channels");
  if (weight[0] != x[1])
    raise_value(op, ": weight: expected C_in = ", x[1],
                " in weight.shape[0] to match the input's channels, got weight shape ",
                shape_str(weight));
  if (weight[2] < 1 || weight[3] < 1)
    raise_value(op, ": weight: expected a non-empty kernel, got shape ", shape_str(weight));
  int64_t c_out = weight[1] * groups;
  check_bias(op, bias, c_out);
  int64_t ho, wo;
  check_formula(op, conv_transpose_out_size(x[2], weight[2], stride.h, pad.h, output_padding.h,
                                            dilation.h, &ho));
  check_formula(op, conv_transpose_out_size(x[3], weight[3], stride.w, pad.w, output_padding.w,
                                            dilation.w, &wo));
  if (ho < 1 || wo < 1)
    raise_value(op, ": padding: output size ", pair_str({ho, wo}),
                " is not positive for input ", pair_str({x[2], x[3]}), " and padding ",
                pair_str(pad));
  const char* grows = (stride.h > 1 || stride.w > 1) ? "stride" : "dilation";
  check_fits(op, grows, {x[0], c_out, ho, wo}, "the output");
  check_fits(op, grows, {weight[1], weight[2], weight[3], x[2], x[3]}, "the lowered output (im2col)");
  // The adjoint convolution maps (c_out, ho, wo) to (c_in, H, W).
  return ConvGeometry{x[0],      c_out,     ho,       wo,       x[1],    x[2],   x[3],
                      weight[2], weight[3], stride.h, stride.w, pad.h,   pad.w,  dilation.h,
                      dilation.w, groups};
}

void check_linear(const char* op, const Shape& x, const Shape& weight, const Shape* bias) {
  check_ndim(op, "input", x, 2, "(N, in_features)");
  check_ndim(op, "weight", weight, 2, "(out_features, in_features)");
  if (weight[1] != x[1])
    raise_value(op, ": weight: expected in_features = ", x[1],
                " in weight.shape[1] to match the input, got weight shape ", shape_str(weight));
  check_bias(op, bias, weight[0]);
}

// ---- Pooling

namespace {
// A dilated window that starts in the padding can step over every input row (or
// column): PyTorch then returns -inf with an index outside the plane, so such a
// geometry is refused. A window that starts inside the input holds its first tap, and
// one that starts in the padding can miss only when dilation > in (a tap before the
// input and the next past it), so only the windows before the first input row need
// a look: at most ceil(pad / stride), which keeps this O(1) in the output size.
void check_windows_hit_input(const char* op, const char* axis, int64_t in, int64_t out,
                             int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  if (dilation <= in) return;
  const int64_t in_padding = std::min(out, pad / stride + (pad % stride != 0));
  for (int64_t o = 0; o < in_padding; ++o) {
    int64_t lo, hi;
    valid_range(o * stride - pad, dilation, in, k, &lo, &hi);
    if (lo >= hi)
      raise_value(op, ": dilation: the window of output ", axis, " ", o, " (taps at ",
                  o * stride - pad, " + ", dilation, " * i) holds none of the ", in,
                  " input ", axis, "s");
  }
}
}  // namespace

PoolGeometry pool2d_geometry(const char* op, const Shape& x, Pair kernel, Pair stride,
                             Pair padding, Pair dilation, bool ceil_mode) {
  check_ndim(op, "input", x, 4, "(N, C, H, W)");
  check_positive(op, "kernel_size", kernel);
  check_positive(op, "stride", stride);
  check_positive(op, "dilation", dilation);
  check_non_negative(op, "padding", padding);
  // PyTorch's bound: half the undilated kernel (it also checks half the dilated
  // extent, which this implies).
  const Pair half{kernel.h / 2, kernel.w / 2};
  if (padding.h > half.h || padding.w > half.w)
    raise_value(op, ": padding: expected at most half of kernel_size ", pair_str(kernel), ", ",
                pair_str(half), ", got ", pair_str(padding));
  PoolGeometry g{x[0],     x[1],     x[2],      x[3],      0,          0,          kernel.h, kernel.w,
                 stride.h, stride.w, padding.h, padding.w, dilation.h, dilation.w, ceil_mode};
  check_formula(op, pool_out_size(g.h, g.kh, g.sh, g.ph, g.dh, ceil_mode, &g.ho));
  check_formula(op, pool_out_size(g.w, g.kw, g.sw, g.pw, g.dw, ceil_mode, &g.wo));
  if (g.ho < 1 || g.wo < 1) {
    int64_t eh, ew;
    dilated_extent(g.kh, g.dh, &eh);
    dilated_extent(g.kw, g.dw, &ew);
    raise_value(op, ": kernel_size: ", (dilation.h > 1 || dilation.w > 1) ? "dilated extent " : "",
                pair_str({eh, ew}), " is larger than the padded input ",
                pair_str({g.h + 2 * g.ph, g.w + 2 * g.pw}), " (output size ",
                pair_str({g.ho, g.wo}), ")");
  }
  check_windows_hit_input(op, "row", g.h, g.ho, g.kh, g.sh, g.ph, g.dh);
  check_windows_hit_input(op, "column", g.w, g.wo, g.kw, g.sw, g.pw, g.dw);
  return g;
}

Shape pool2d_input_shape(const char* op, const std::vector<int64_t>& input_shape) {
  if (input_shape.size() != 4)
    raise_value(op, ": input_shape: expected 4 values (N, C, H, W), got ", input_shape.size(),
                " values ", shape_str(input_shape));
  for (int64_t v : input_shape)
    if (v < 0)
      raise_value(op, ": input_shape: expected non-negative values, got ", shape_str(input_shape));
  check_fits(op, "input_shape", input_shape, "the gradient");
  return input_shape;
}

PoolGeometry switches_geometry(const char* op, const char* pooled_name, const Shape& pooled,
                               const char* full_name, const Shape& full) {
  check_ndim(op, pooled_name, pooled, 4, "(N, C, H, W)");
  check_ndim(op, full_name, full, 4, "(N, C, H, W)");
  if (pooled[0] != full[0] || pooled[1] != full[1])
    raise_value(op, ": ", full_name, ": expected N, C = ", pooled[0], ", ", pooled[1], " to match ",
                pooled_name, " ", shape_str(pooled), ", got ", shape_str(full));
  return PoolGeometry{full[0], full[1], full[2], full[3], pooled[2], pooled[3], 0, 0,
                      0,       0,       0,       0,       0,         0,         false};
}

PoolGeometry max_unpool2d_geometry(const char* op, const Shape& x, Pair kernel, Pair stride,
                                   Pair padding, const std::vector<int64_t>* output_size) {
  check_ndim(op, "input", x, 4, "(N, C, H, W)");
  check_positive(op, "kernel_size", kernel);
  check_positive(op, "stride", stride);
  check_non_negative(op, "padding", padding);
  // The output of the transposed window map, as PyTorch's default.
  Pair def;
  check_formula(op, conv_transpose_out_size(x[2], kernel.h, stride.h, padding.h, 0, 1, &def.h));
  check_formula(op, conv_transpose_out_size(x[3], kernel.w, stride.w, padding.w, 0, 1, &def.w));
  Pair out = def;
  if (output_size) {
    const Shape& s = *output_size;
    if (s.size() != 2 && s.size() != 4)
      raise_value(op, ": output_size: expected (H, W) or (N, C, H, W), got ", s.size(),
                  " values ", shape_str(s));
    if (s.size() == 4 && (s[0] != x[0] || s[1] != x[1]))
      raise_value(op, ": output_size: expected N, C = ", x[0], ", ", x[1],
                  " to match the input, got ", shape_str(s));
    out = {s[s.size() - 2], s[s.size() - 1]};
    auto within = [](int64_t v, int64_t centre, int64_t radius) {  // no overflow in 128 bits
      const __int128 d = static_cast<__int128>(v) - centre;
      return -radius < d && d < radius;
    };
    if (!within(out.h, def.h, stride.h) || !within(out.w, def.w, stride.w))
      raise_value(op, ": output_size: expected (H, W) within stride ", pair_str(stride),
                  " of the default ", pair_str(def), " (exclusive), got ", pair_str(out));
  }
  if (out.h < 1 || out.w < 1)
    raise_value(op, ": ", output_size ? "output_size" : "padding", ": output size ",
                pair_str(out), " is not positive for input ", pair_str({x[2], x[3]}),
                ", kernel_size ", pair_str(kernel), ", stride ", pair_str(stride),
                " and padding ", pair_str(padding));
  check_fits(op, output_size ? "output_size" : "stride", {x[0], x[1], out.h, out.w}, "the output");
  return PoolGeometry{x[0],     x[1],     out.h,     out.w,     x[2], x[3], kernel.h, kernel.w,
                      stride.h, stride.w, padding.h, padding.w, 1,    1,    false};
}

void check_switch(const char* op, const Shape& switches, int64_t position, int64_t value,
                  int64_t plane) {
  if (position < 0) return;
  Shape at(switches.size());
  for (size_t d = switches.size(); d-- > 0;) {
    at[d] = position % switches[d];
    position /= switches[d];
  }
  raise_value(op, ": switches: expected flat indices h * W + w in [0, ", plane,
              ") of the plane they index, got ", value, " at ", shape_str(at));
}

void check_norm_type(const char* op, double norm_type) {
  if (!(norm_type < 0 || norm_type > 0))  // zero or NaN
    raise_value(op, ": norm_type: expected a non-zero number, got ", norm_type);
}

namespace {
void check_min_ndim(const char* op, const char* name, const Shape& s, size_t ndim,
                    const char* layout) {
  if (s.size() < ndim)
    raise_value(op, ": ", name, ": expected ", ndim, " or more dims ", layout, ", got ", s.size(),
                "-D shape ", shape_str(s));
}

int64_t product(Shape::const_iterator begin, Shape::const_iterator end) {
  int64_t p = 1;
  for (auto it = begin; it != end; ++it) p *= *it;
  return p;
}
}  // namespace

int64_t wrap_dim(const char* op, int64_t dim, size_t ndim) {
  const int64_t r = std::max<int64_t>(1, static_cast<int64_t>(ndim));
  if (dim < -r || dim >= r) {
    std::ostringstream os;
    os << op << ": dim: expected a value in [" << -r << ", " << r - 1 << "], got " << dim;
    throw std::out_of_range(os.str());
  }
  return dim < 0 ? dim + r : dim;
}

DimSplit split_at_dim(const Shape& s, int64_t dim) {
  if (s.empty()) return {1, 1, 1};
  return {product(s.begin(), s.begin() + dim), s[dim], product(s.begin() + dim + 1, s.end())};
}

Reduction parse_reduction(const char* op, const std::string& reduction) {
  if (reduction == "mean") return Reduction::mean;
  if (reduction == "sum") return Reduction::sum;
  if (reduction == "none") return Reduction::none;
  raise_value(op, ": reduction: expected 'mean', 'sum' or 'none', got '", reduction, "'");
}

void check_cross_entropy(const char* op, const Shape& logits, const Shape& target) {
  check_ndim(op, "input", logits, 2, "(N, C) of logits");
  check_ndim(op, "target", target, 1, "(N,) of class indices");
  if (target[0] != logits[0])
    raise_value(op, ": target: expected shape (", logits[0], ",) to match the batch of input ",
                shape_str(logits), ", got ", shape_str(target));
}

void check_class_indices(const char* op, const char* name, const int64_t* target, int64_t n,
                         int64_t classes) {
  for (int64_t i = 0; i < n; ++i)
    if (target[i] < 0 || target[i] >= classes)
      raise_value(op, ": ", name, ": expected class indices in [0, ", classes, "), got ",
                  target[i], " at position ", i);
}

void check_dropout_p(const char* op, double p) {
  if (!(p >= 0 && p < 1)) raise_value(op, ": p: expected a probability in [0, 1), got ", p);
}

DimSplit check_batch_norm_input(const char* op, const Shape& x, const Shape* gamma,
                                const Shape* beta) {
  check_min_ndim(op, "input", x, 2, "(N, C, ...)");
  if (gamma) check_shape(op, "gamma", *gamma, {x[1]});
  if (beta) check_shape(op, "beta", *beta, {x[1]});
  return {x[0], x[1], product(x.begin() + 2, x.end())};
}

DimSplit check_batch_norm(const char* op, const Shape& x, const Shape* gamma, const Shape* beta,
                          const Shape* running_mean, const Shape* running_var, bool training,
                          double eps) {
  const DimSplit d = check_batch_norm_input(op, x, gamma, beta);
  const int64_t c = d.size;
  if (running_mean) check_shape(op, "running_mean", *running_mean, {c});
  if (running_var) check_shape(op, "running_var", *running_var, {c});
  if (!training && !running_mean)
    raise_value(op, ": running_mean: expected an array when training=False, got None");
  if (!training && !running_var)
    raise_value(op, ": running_var: expected an array when training=False, got None");
  if (!(eps >= 0)) raise_value(op, ": eps: expected a non-negative value, got ", eps);
  if (training && d.outer * d.inner == 1)
    raise_value(op, ": input: expected more than 1 value per channel when training, got shape ",
                shape_str(x));
  return d;
}

DimSplit check_local_response_norm(const char* op, const Shape& x, int64_t size) {
  check_min_ndim(op, "input", x, 3, "(N, C, ...)");
  if (size < 1) raise_value(op, ": size: expected a positive integer, got ", size);
  return {x[0], x[1], product(x.begin() + 2, x.end())};
}

}  // namespace cnnkit
