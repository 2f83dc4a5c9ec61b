#include <gtest/gtest.h>

#include "galvani/plugin.h"

TEST(Fingerprint, OwnFingerprintIsCompatible) {
  EXPECT_EQ(galvani::fingerprint_mismatch(galvani::build_fingerprint(), GALVANI_BUILD_FINGERPRINT), "");
}

TEST(Fingerprint, NamesEveryDifferingFieldWithBothSides) {
  const auto msg = galvani::fingerprint_mismatch("sdk=0.1.0;abi=1;cxx11abi=1;torch=1.13.0;cuda=0;compiler=gcc-12",
                                                 "sdk=0.2.0;abi=1;cxx11abi=0;torch=2.4.0;cuda=1;compiler=clang-17");
  EXPECT_NE(msg.find("sdk: 0.1.0 in the host, 0.2.0 in the plugin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cxx11abi"), std::string::npos) << msg;
  EXPECT_NE(msg.find("torch: 1.13.0 in the host, 2.4.0 in the plugin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("compiler"), std::string::npos) << "the compiler alone never makes plugins incompatible";
}
