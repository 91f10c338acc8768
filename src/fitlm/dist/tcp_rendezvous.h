// A one-shot TCP rendezvous: rank 0 hands the same bytes to every other rank of a job that has
// no MPI (torchrun, srun with MASTER_ADDR / MASTER_PORT). The GPU comm uses it to give every
// rank rank 0's NCCL unique id; nothing else travels over it.
//
// Rank 0 listens on `port` (any local address) until every other rank has connected, and sends
// each one the payload; the others connect to `addr`:`port`, retrying while rank 0 is not yet
// listening. Each connection begins with a hello (magic, rank, world size, payload size), so a
// stray or mismatched process is refused with an error instead of being handed the bytes.
// POSIX sockets, blocking calls bounded by poll(): past `timeout_s` every rank throws
// fitlm::Error naming MASTER_ADDR:MASTER_PORT and what it was waiting for.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fitlm::dist {

struct TcpRendezvous {
  std::string addr;        // rank 0's host (MASTER_ADDR): a name or a numeric address
  int port = 0;            // rank 0's port (MASTER_PORT), 1..65535
  int rank = 0;            // this process, 0 .. world - 1
  int world = 1;           // processes in the job
  double timeout_s = 120;  // how long any rank waits for the others
};

// Every rank returns rank 0's `payload` (`payload` is read on rank 0 only; the other ranks pass
// an empty span). `size` is the payload's size in bytes, the same on every rank.
std::vector<uint8_t> tcp_broadcast_bytes(const TcpRendezvous& where,
                                         std::span<const uint8_t> payload, size_t size);

}  // namespace fitlm::dist
