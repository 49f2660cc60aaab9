#include <regex>
#include <sstream>
#include <string>
__global__ void kern(int *x) { x[0] = 1; }
std::string f(int v) {
  std::ostringstream s;
  s << v;
  std::regex r("[a-z]+");
  return s.str() + (std::regex_match("abc", r) ? "y" : "n");
}
extern "C" int launch() {
  int *d;
  cudaMalloc(&d, 4);
  kern<<<1, 1>>>(d);
  cudaFree(d);
  return (int)f(3).size();
}
