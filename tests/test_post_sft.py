"""SFT examples: the loss mask covers exactly the assistant's tokens; packed chats equal chats trained alone."""

import copy

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.post import chat_example, pack_examples, response_example, sft_loss
from minillm.post.sft import SFTConfig, train_sft
from minillm.tokenizer import train_bpe
from minillm.train.packing import IGNORE

CHAT = [{"role": "system", "content": "You are a careful maths assistant."},
        {"role": "user", "content": "Calculate 5 - 3."},
        {"role": "assistant", "content": "The answer is 2."},
        {"role": "user", "content": "And 4 * 2?"},
        {"role": "assistant", "content": "The answer is 8."}]


@pytest.fixture(scope="module")
def tok():
    texts = [m["content"] for m in CHAT] * 20 + ["system user assistant The answer is 42. Calculate 7 + 1."] * 20
    return train_bpe(texts, vocab_size=300)


pytestmark = pytest.mark.usefixtures("one_thread")


def expected_llama3(tok, chat, learn):
    """The Llama 3 chat format built here piece by piece, with the mask we expect: ``learn(i)`` says whether
    message ``i``'s content and <|eot_id|> are targets; headers never are."""
    ids, mask = [tok.bos_id], [False]
    for i, m in enumerate(chat):
        header = [tok.token_to_id("<|start_header_id|>"), *tok.encode(m["role"]), tok.token_to_id("<|end_header_id|>"),
                  *tok.encode("\n\n")]
        body = tok.encode(m["content"]) + [tok.token_to_id("<|eot_id|>")]
        ids += header + body
        mask += [False] * len(header) + [learn(i)] * len(body)
    return ids, mask


def test_loss_mask_covers_every_assistant_turn_and_nothing_else(tok):
    ex = chat_example(tok, CHAT)
    assert (ex.input_ids, ex.loss_mask) == expected_llama3(tok, CHAT, lambda i: CHAT[i]["role"] == "assistant")
    targets = [t for t, m in zip(ex.input_ids, ex.loss_mask) if m]
    assert tok.decode(targets) == "The answer is 2.<|eot_id|>The answer is 8.<|eot_id|>"


def test_last_turn_only_learns_the_final_answer(tok):
    ex = chat_example(tok, CHAT, last_turn_only=True)
    assert (ex.input_ids, ex.loss_mask) == expected_llama3(tok, CHAT, lambda i: i == len(CHAT) - 1)


def test_without_special_tokens_the_end_of_turn_is_not_a_target(tok):
    ex = response_example(tok, CHAT[:2], "The answer is 2.", train_on_special=False)
    assert tok.decode([t for t, m in zip(ex.input_ids, ex.loss_mask) if m]) == "The answer is 2."
    assert ex.input_ids[ex.prompt_len - 1] == tok.encode("\n\n")[-1]           # the header ends the prompt
    assert ex.labels[:ex.prompt_len] == [IGNORE] * ex.prompt_len


def test_a_chat_must_end_with_the_assistant(tok):
    with pytest.raises(ValueError, match="ends with an assistant"):
        chat_example(tok, CHAT[:2])


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return Llama(ModelConfig.tiny(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=tok.vocab_size,
                                  max_seq_len=256)).eval()


def plain_loss_sum(model, ex):
    """Cross-entropy summed over one chat's targets, computed alone (no packing, plain causal mask)."""
    tokens = torch.tensor([ex.input_ids])
    logits = model(tokens)[0, :-1]                                            # (T-1, vocab)
    nll = -logits.log_softmax(-1).gather(-1, tokens[0, 1:, None]).squeeze(-1)
    return (nll * torch.tensor(ex.loss_mask[1:])).sum()


def test_packed_chats_give_the_loss_of_each_chat_alone(tok, model):
    examples = [chat_example(tok, CHAT), response_example(tok, CHAT[1:2], "The answer is 2."),
                chat_example(tok, CHAT[:3]), response_example(tok, CHAT[3:4], "8")]
    batch = pack_examples(examples, seq_len=96, pad_id=tok.eos_id)
    assert batch.tokens.shape[0] < len(examples)                               # several chats share a row
    assert batch.n_targets == sum(sum(e.loss_mask) for e in examples)
    with torch.no_grad():
        packed = sft_loss(model, batch) * batch.n_targets
        alone = sum(plain_loss_sum(model, e) for e in examples)
    assert packed.item() == pytest.approx(alone.item(), rel=1e-4)


def test_without_document_masks_packed_chats_would_read_each_other(tok, model):
    sharp = copy.deepcopy(model)
    sharp.reset_parameters(std=0.5)                        # large weights: attention that depends on the context
    examples = [chat_example(tok, CHAT), chat_example(tok, CHAT[:3])]
    batch = pack_examples(examples, seq_len=160, pad_id=tok.eos_id)
    assert batch.tokens.shape[0] == 1
    with torch.no_grad():
        alone = sum(plain_loss_sum(sharp, e) for e in examples) / batch.n_targets
        masked = sft_loss(sharp, batch)
        leaky = sft_loss(sharp, batch, use_doc_mask=False)
    assert masked.item() == pytest.approx(alone.item(), rel=1e-4)
    assert abs(leaky.item() - alone.item()) > 1e-2


def test_a_chat_longer_than_a_row_is_refused(tok):
    with pytest.raises(ValueError, match="does not fit seq_len"):
        pack_examples([chat_example(tok, CHAT)], seq_len=8, pad_id=0)


def test_sft_steps_lower_the_loss_on_their_chats(tok):
    torch.manual_seed(1)
    model = Llama(ModelConfig.tiny(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64,
                                   vocab_size=tok.vocab_size, max_seq_len=128))
    history = train_sft(model, tok, [CHAT, CHAT[:3]], SFTConfig(steps=8, examples_per_step=2, seq_len=96, lr=1e-2,
                                                                warmup_steps=0, final_lr=1e-2))
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert history[0]["targets"] == sum(sum(chat_example(tok, c).loss_mask) for c in [CHAT, CHAT[:3]])
