// Big-endian loads and stores over byte spans, and a bounds-checked reader
// for variable-length handshake payloads. No I/O.
#ifndef UBLKGW_NBD_BYTES_H_
#define UBLKGW_NBD_BYTES_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace ublkgw::nbd {

template <typename T>
T LoadBe(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v << 8 | p[i]);
  return v;
}

template <typename T>
void StoreBe(uint8_t* p, T v) {
  for (size_t i = sizeof(T); i-- > 0;) {
    p[i] = static_cast<uint8_t>(v);
    v = static_cast<T>(v >> 8);
  }
}

// Appends big-endian fields to a byte string.
class ByteWriter {
 public:
  template <typename T>
  ByteWriter& Put(T v) {
    uint8_t b[sizeof(T)];
    StoreBe(b, v);
    out_.append(reinterpret_cast<const char*>(b), sizeof(T));
    return *this;
  }
  ByteWriter& PutBytes(std::string_view bytes) {
    out_.append(bytes);
    return *this;
  }
  const std::string& bytes() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads big-endian fields from a span; every read is bounds-checked and
// returns nullopt past the end (a truncated message), never reads beyond.
class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  template <typename T>
  std::optional<T> Get() {
    if (remaining() < sizeof(T)) return std::nullopt;
    T v = LoadBe<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::optional<std::string> GetString(size_t n) {
    if (remaining() < n) return std::nullopt;
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_BYTES_H_
