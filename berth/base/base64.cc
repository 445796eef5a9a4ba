#include "berth/base/base64.h"

#include <fmt/format.h>

#include <array>

namespace berth {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Encode(std::string_view bytes, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (; i + 3 <= bytes.size(); i += 3) {
    unsigned value = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out.push_back(alphabet[(value >> 18) & 63]);
    out.push_back(alphabet[(value >> 12) & 63]);
    out.push_back(alphabet[(value >> 6) & 63]);
    out.push_back(alphabet[value & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    unsigned value = byte(i) << 16;
    out.push_back(alphabet[(value >> 18) & 63]);
    out.push_back(alphabet[(value >> 12) & 63]);
    if (pad) out += "==";
  } else if (rest == 2) {
    unsigned value = (byte(i) << 16) | (byte(i + 1) << 8);
    out.push_back(alphabet[(value >> 18) & 63]);
    out.push_back(alphabet[(value >> 12) & 63]);
    out.push_back(alphabet[(value >> 6) & 63]);
    if (pad) out.push_back('=');
  }
  return out;
}

}  // namespace

std::string Base64Encode(std::string_view bytes) { return Encode(bytes, kAlphabet, true); }
std::string Base64UrlEncode(std::string_view bytes) { return Encode(bytes, kUrlAlphabet, false); }

Result<std::string> Base64Decode(std::string_view text) {
  std::array<int, 256> table;
  table.fill(-1);
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(kAlphabet[i])] = i;
  if (text.size() % 4 != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid base64: length {} is not a multiple of 4", text.size()));
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    int values[4];
    int padding = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      bool last_group = i + 4 == text.size();
      if (c == '=' && last_group && k >= 2) {
        values[k] = 0;
        ++padding;
        continue;
      }
      if (padding > 0 || table[static_cast<unsigned char>(c)] < 0) {
        return Fail(ErrorCode::kInvalidArgument,
                    fmt::format("invalid base64: illegal character at position {}", i + k));
      }
      values[k] = table[static_cast<unsigned char>(c)];
    }
    unsigned value = (values[0] << 18) | (values[1] << 12) | (values[2] << 6) | values[3];
    out.push_back(static_cast<char>((value >> 16) & 0xff));
    if (padding < 2) out.push_back(static_cast<char>((value >> 8) & 0xff));
    if (padding < 1) out.push_back(static_cast<char>(value & 0xff));
  }
  return out;
}

Result<std::string> Base64UrlDecode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid base64url: length {} is impossible", text.size()));
  }
  std::string standard(text);
  for (char& c : standard) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (c == '+' || c == '/') {
      return Fail(ErrorCode::kInvalidArgument, "invalid base64url: '+' or '/' in the input");
    }
  }
  standard.append((4 - standard.size() % 4) % 4, '=');
  return Base64Decode(standard);
}

}  // namespace berth
