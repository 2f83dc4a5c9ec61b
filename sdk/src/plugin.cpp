#include "galvani/plugin.h"

#include <map>
#include <sstream>

namespace galvani {
namespace {
std::map<std::string, std::string> fields(const std::string& fingerprint) {
  std::map<std::string, std::string> out;
  std::stringstream in(fingerprint);
  for (std::string item; std::getline(in, item, ';');) {
    const auto eq = item.find('=');
    if (eq != std::string::npos) out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}
}  // namespace

const char* build_fingerprint() { return GALVANI_BUILD_FINGERPRINT; }

std::string fingerprint_mismatch(const std::string& host, const std::string& plugin) {
  const auto h = fields(host);
  const auto p = fields(plugin);
  std::ostringstream out;
  for (const char* key : {"sdk", "abi", "cxx11abi", "torch", "cuda"}) {
    const auto hi = h.find(key);
    const auto pi = p.find(key);
    const std::string hv = hi == h.end() ? "(missing)" : hi->second;
    const std::string pv = pi == p.end() ? "(missing)" : pi->second;
    if (hv != pv) out << (out.tellp() > 0 ? "; " : "") << key << ": " << hv << " in the host, " << pv << " in the plugin";
  }
  return out.str();
}

}  // namespace galvani
