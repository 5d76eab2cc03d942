// Exceptions that the bindings translate into Python's ValueError and TypeError.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include <cstdint>

namespace cnnkit {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class A, class... R>
void append(std::ostringstream& os, const A& a, const R&... r) {
  os << a;
  append(os, r...);
}
}  // namespace detail

template <class... A>
[[noreturn]] void raise_value(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw ValueError(os.str());
}

template <class... A>
[[noreturn]] void raise_type(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw TypeError(os.str());
}

using Shape = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

}  // namespace cnnkit
