/* SPDX-License-Identifier: MIT */
/*
 * The mailbox link; see mailbox.h and docs/PROTOCOL.md section 7.
 *
 * Invariants (each side, private state):
 *  - tx is the value this side last stored in its producer word, rx the
 *    value it last stored in its consumer word; neither is ever read back
 *    from the window.
 *  - 0 <= tx - peer_cons <= n_slots and 0 <= peer_prod - rx <= n_slots for
 *    an honest peer; anything else breaks the link.
 *  - A slot is read only between an acquire load of the peer's producer
 *    word that covers it and the release store of our consumer word that
 *    hands it back; it is copied out once, then validated and decoded from
 *    the copy.
 *  - The driver never sends before the device acknowledged its epoch; the
 *    device answers only requests of the session it acknowledged.
 */
#include "xvl_types.h"

#include "mailbox.h"
#include "xvl_atomic.h"
#include "xvl_err.h"

_Static_assert(XVL_MBOX_SLOT_HDR + XVL_MSG_MAX_SIZE <= XVL_MBOX_SLOT_SIZE, "a message fits its slot");
_Static_assert(XVL_MBOX_SLOT_SIZE % 64 == 0, "slots are cache-line multiples");

/* ---------------------------------------------------------- field access */

static uint32_t *word(const struct xvl_mbox *mb, uint32_t off)
{
	return (uint32_t *)(void *)(mb->base + off);
}

static uint32_t rd32_acquire(const uint32_t *p) { return xvl_le32(xvl_load_acquire(p)); }
static void wr32_release(uint32_t *p, uint32_t v) { xvl_store_release(p, xvl_le32(v)); }

static bool pow2_slots(unsigned n) { return n >= 1 && n <= XVL_MBOX_MAX_SLOTS && !(n & (n - 1)); }

uint64_t xvl_mbox_size(unsigned n_slots)
{
	if (!pow2_slots(n_slots))
		return 0;
	uint64_t len = XVL_MBOX_OFF_SLOTS + 2ull * n_slots * XVL_MBOX_SLOT_SIZE;
	return (len + 4095u) & ~(uint64_t)4095u;
}

/* The ring this side produces into: its slots, its producer word, the peer's consumer word. */
static uint8_t *tx_slot(const struct xvl_mbox *mb, uint32_t idx)
{
	uint64_t ring = mb->driver ? 0 : (uint64_t)mb->n_slots * XVL_MBOX_SLOT_SIZE;
	return mb->base + XVL_MBOX_OFF_SLOTS + ring + (uint64_t)(idx & (mb->n_slots - 1)) * XVL_MBOX_SLOT_SIZE;
}

static const uint8_t *rx_slot(const struct xvl_mbox *mb, uint32_t idx)
{
	uint64_t ring = mb->driver ? (uint64_t)mb->n_slots * XVL_MBOX_SLOT_SIZE : 0;
	return mb->base + XVL_MBOX_OFF_SLOTS + ring + (uint64_t)(idx & (mb->n_slots - 1)) * XVL_MBOX_SLOT_SIZE;
}

static uint32_t *tx_prod(const struct xvl_mbox *mb) { return word(mb, mb->driver ? XVL_MBOX_OFF_REQ_PROD : XVL_MBOX_OFF_RSP_PROD); }
static uint32_t *tx_cons(const struct xvl_mbox *mb) { return word(mb, mb->driver ? XVL_MBOX_OFF_REQ_CONS : XVL_MBOX_OFF_RSP_CONS); }
static uint32_t *rx_prod(const struct xvl_mbox *mb) { return word(mb, mb->driver ? XVL_MBOX_OFF_RSP_PROD : XVL_MBOX_OFF_REQ_PROD); }
static uint32_t *rx_cons(const struct xvl_mbox *mb) { return word(mb, mb->driver ? XVL_MBOX_OFF_RSP_CONS : XVL_MBOX_OFF_REQ_CONS); }

/* Show the peer the link closed from this side. */
static void signal_closed(struct xvl_mbox *mb)
{
	if (mb->driver) {
		if (mb->session)
			wr32_release(word(mb, XVL_MBOX_OFF_DRV_EPOCH), mb->session | XVL_MBOX_EPOCH_CLOSED);
		mb->up = false;
	} else {
		wr32_release(word(mb, XVL_MBOX_OFF_DEV_ACK), 0);
		mb->session = 0;
	}
}

/* A peer broke the rules: the link is dead for this session, and the peer sees it closed. */
static int break_link(struct xvl_mbox *mb, int rc, const char *why)
{
	mb->broken = rc;
	mb->why = why;
	mb->last_broken = mb->session;
	signal_closed(mb);
	return rc;
}

/* ---------------------------------------------------------- driver side */

int xvl_mbox_format(struct xvl_mbox *mb, const struct xvl_mem *m, uint64_t off, unsigned n_slots,
		    uint32_t drv_vectors)
{
	if (!mb || !m || !m->base)
		return -EINVAL;
	if (!n_slots)
		n_slots = XVL_MBOX_DEF_SLOTS;
	uint64_t len = xvl_mbox_size(n_slots);
	if (!len || off < XVL_WIN_HDR_SIZE || (off & 63) || drv_vectors > XVL_MBOX_MAX_VECTORS)
		return -EINVAL;
	if (!xvl_mem_ptr(m, off, len) || xvl_win_check(m) != 0)
		return -EINVAL;

	xvl_memset(mb, 0, sizeof(*mb));
	mb->mem = *m;
	mb->base = m->base + off;
	mb->off = off;
	mb->len = len;
	mb->n_slots = n_slots;
	mb->driver = true;

	xvl_memset(mb->base, 0, (size_t)len);
	xvl_wr16((uint16_t *)(void *)(mb->base + XVL_MBOX_OFF_VERSION), XVL_MBOX_VERSION);
	xvl_wr16((uint16_t *)(void *)(mb->base + XVL_MBOX_OFF_NSLOTS), (uint16_t)n_slots);
	xvl_wr32(word(mb, XVL_MBOX_OFF_SLOTSIZE), XVL_MBOX_SLOT_SIZE);
	xvl_wr32(word(mb, XVL_MBOX_OFF_DRV_VECTORS), drv_vectors);
	int rc = xvl_win_record((struct xvl_mem *)m, XVL_WIN_MAILBOX, 0xffff, 0xffff, off, len);
	if (rc < 0)
		return rc;
	/* Magic, then the header's link field, each after everything it vouches for. */
	xvl_wmb();
	xvl_wr32(word(mb, XVL_MBOX_OFF_MAGIC), XVL_MBOX_MAGIC);
	xvl_wmb();
	struct xvl_win_hdr *h = (struct xvl_win_hdr *)(void *)m->base;
	xvl_wr32(&h->link, XVL_WIN_LINK_MAILBOX);
	return 0;
}

int xvl_mbox_connect(struct xvl_mbox *mb)
{
	if (!mb || !mb->driver)
		return -EINVAL;
	/* The next epoch after both the window's and our own, never 0, never with the closed bit. */
	uint32_t cur = xvl_rd32(word(mb, XVL_MBOX_OFF_DRV_EPOCH)) & ~XVL_MBOX_EPOCH_CLOSED;
	uint32_t mine = mb->session & ~XVL_MBOX_EPOCH_CLOSED;
	uint32_t next = ((cur > mine ? cur : mine) + 1) & ~XVL_MBOX_EPOCH_CLOSED;
	if (!next)
		next = 1;
	mb->session = next;
	mb->up = false;
	mb->broken = 0;
	mb->why = 0;
	/* Everything we wrote in the old session (req slots, req prod) is ordered before this. */
	wr32_release(word(mb, XVL_MBOX_OFF_DRV_EPOCH), next);
	return 0;
}

int xvl_mbox_connected(struct xvl_mbox *mb)
{
	if (!mb || !mb->driver || !mb->session)
		return -EINVAL;
	if (mb->broken)
		return mb->broken;
	if (mb->up)
		return 1;
	if (rd32_acquire(word(mb, XVL_MBOX_OFF_DEV_ACK)) != mb->session)
		return 0;
	uint32_t vec = xvl_rd32(word(mb, XVL_MBOX_OFF_DEV_VECTORS));
	if (vec > XVL_MBOX_MAX_VECTORS)
		return break_link(mb, -EINVAL, "the device side announced more than 64 doorbell vectors");
	mb->peer_vectors = vec;
	mb->instance = xvl_rd32(word(mb, XVL_MBOX_OFF_DEV_EPOCH));
	/* Whatever the device wrote before acknowledging belongs to an old session: skip it. */
	mb->rx = rd32_acquire(word(mb, XVL_MBOX_OFF_RSP_PROD));
	wr32_release(word(mb, XVL_MBOX_OFF_RSP_CONS), mb->rx);
	mb->up = true;
	return 1;
}

/* ---------------------------------------------------------- device side */

/* The single type-7 entry of the layout table, read once and bounded. */
static int find_entry(const struct xvl_mem *m, uint64_t *off, uint64_t *len)
{
	const struct xvl_win_hdr *h = (const struct xvl_win_hdr *)(const void *)m->base;
	uint32_t n = xvl_rd32(&h->n_entries);
	unsigned found = 0;

	if (n > XVL_WIN_MAX_ENTRIES)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		if (xvl_rd32(&h->table[i].type) != XVL_WIN_MAILBOX)
			continue;
		*off = xvl_rd64(&h->table[i].off);
		*len = xvl_rd64(&h->table[i].len);
		found++;
	}
	if (found == 0)
		return -ENOENT;
	return found == 1 ? 0 : -EINVAL;
}

int xvl_mbox_open(struct xvl_mbox *mb, const struct xvl_mem *m, uint32_t dev_vectors)
{
	if (!mb || !m || !m->base || dev_vectors > XVL_MBOX_MAX_VECTORS)
		return -EINVAL;
	const struct xvl_win_hdr *h = (const struct xvl_win_hdr *)(const void *)m->base;
	if (m->size < XVL_WIN_MIN_SIZE || xvl_rd32(&h->magic) != XVL_WIN_MAGIC)
		return -EAGAIN; /* the driver side has not formatted it yet */
	int rc = xvl_win_check(m);
	if (rc < 0)
		return rc;
	uint64_t gen = xvl_rd64(&h->generation);
	if (xvl_rd16(&h->version_minor) < 1 || xvl_rd32(&h->link) != XVL_WIN_LINK_MAILBOX)
		return -ENOENT;
	xvl_rmb();
	uint64_t off = 0, len = 0;
	rc = find_entry(m, &off, &len);
	if (rc < 0)
		return rc;
	if (off < XVL_WIN_HDR_SIZE || (off & 63) || !xvl_mem_ptr(m, off, len))
		return -EINVAL;

	uint8_t *base = m->base + off;
	if (xvl_rd32((const uint32_t *)(const void *)(base + XVL_MBOX_OFF_MAGIC)) != XVL_MBOX_MAGIC)
		return -EAGAIN; /* laid out but not complete yet */
	xvl_rmb();
	if (xvl_rd16((const uint16_t *)(const void *)(base + XVL_MBOX_OFF_VERSION)) != XVL_MBOX_VERSION)
		return -EPROTONOSUPPORT;
	unsigned n = xvl_rd16((const uint16_t *)(const void *)(base + XVL_MBOX_OFF_NSLOTS));
	uint32_t slot = xvl_rd32((const uint32_t *)(const void *)(base + XVL_MBOX_OFF_SLOTSIZE));
	uint32_t dvec = xvl_rd32((const uint32_t *)(const void *)(base + XVL_MBOX_OFF_DRV_VECTORS));
	if (!pow2_slots(n) || slot != XVL_MBOX_SLOT_SIZE || xvl_mbox_size(n) > len ||
	    dvec > XVL_MBOX_MAX_VECTORS)
		return -EINVAL;
	/* A re-format while we read: start over. */
	xvl_rmb();
	if (xvl_rd64(&h->generation) != gen)
		return -EAGAIN;

	xvl_memset(mb, 0, sizeof(*mb));
	mb->mem = *m;
	mb->base = base;
	mb->off = off;
	mb->len = len;
	mb->generation = gen;
	mb->n_slots = n;
	mb->driver = false;
	mb->peer_vectors = dvec;
	/* Our producer word continues where the previous device instance left it. */
	mb->tx = xvl_rd32(word(mb, XVL_MBOX_OFF_RSP_PROD));
	mb->instance = xvl_rd32(word(mb, XVL_MBOX_OFF_DEV_EPOCH)) + 1;
	if (!mb->instance)
		mb->instance = 1;
	xvl_wr32(word(mb, XVL_MBOX_OFF_DEV_VECTORS), dev_vectors);
	xvl_wr32(word(mb, XVL_MBOX_OFF_DEV_EPOCH), mb->instance);
	wr32_release(word(mb, XVL_MBOX_OFF_DEV_ACK), 0);
	return 0;
}

static bool window_reformatted(const struct xvl_mbox *mb)
{
	const struct xvl_win_hdr *h = (const struct xvl_win_hdr *)(const void *)mb->mem.base;
	return xvl_rd64(&h->generation) != mb->generation;
}

static bool epoch_live(uint32_t e) { return e != 0 && !(e & XVL_MBOX_EPOCH_CLOSED); }

int xvl_mbox_accept(struct xvl_mbox *mb)
{
	if (!mb || mb->driver)
		return -EINVAL;
	if (window_reformatted(mb))
		return -ESTALE;
	uint32_t e = rd32_acquire(word(mb, XVL_MBOX_OFF_DRV_EPOCH));
	if (!epoch_live(e) || e == mb->session)
		return 0;
	if (mb->broken && e == mb->last_broken)
		return 0; /* the session we broke; wait for the driver's next one */
	/* Requests of older sessions are dropped: start consuming where the driver is now. */
	mb->rx = rd32_acquire(word(mb, XVL_MBOX_OFF_REQ_PROD));
	wr32_release(word(mb, XVL_MBOX_OFF_REQ_CONS), mb->rx);
	mb->session = e;
	mb->broken = 0;
	mb->why = 0;
	wr32_release(word(mb, XVL_MBOX_OFF_DEV_ACK), e);
	return 1;
}

/* ---------------------------------------------------------- both sides */

/* Is the peer still in our session?  0, -ENOTCONN, -ECONNRESET, -ESTALE. */
static int check_peer(struct xvl_mbox *mb)
{
	if (mb->driver) {
		if (!mb->up)
			return -ENOTCONN;
		if (rd32_acquire(word(mb, XVL_MBOX_OFF_DEV_ACK)) != mb->session ||
		    xvl_rd32(word(mb, XVL_MBOX_OFF_DEV_EPOCH)) != mb->instance) {
			mb->up = false;
			return -ECONNRESET; /* the device side restarted or closed the link */
		}
		return 0;
	}
	if (!mb->session)
		return -ENOTCONN;
	if (window_reformatted(mb)) {
		mb->session = 0;
		return -ESTALE;
	}
	if (rd32_acquire(word(mb, XVL_MBOX_OFF_DRV_EPOCH)) != mb->session) {
		mb->session = 0;
		return -ECONNRESET; /* the driver side closed or began another session */
	}
	return 0;
}

int xvl_mbox_send(struct xvl_mbox *mb, const struct xvl_msg *m)
{
	if (!mb || !mb->base)
		return -EINVAL;
	if (mb->broken)
		return mb->broken;
	int rc = check_peer(mb);
	if (rc < 0)
		return rc;
	/* Acquire: the peer finished reading a slot before it handed it back. */
	uint32_t used = mb->tx - rd32_acquire(tx_cons(mb));
	if (used > mb->n_slots)
		return break_link(mb, -EPROTO, "the peer's consumer index is ahead of what was sent");
	if (used == mb->n_slots)
		return -EAGAIN;
	uint8_t *slot = tx_slot(mb, mb->tx);
	int n = xvl_msg_encode(m, slot + XVL_MBOX_SLOT_HDR, XVL_MSG_MAX_SIZE);
	if (n < 0)
		return n; /* our own message is wrong: nothing was published */
	xvl_wr32((uint32_t *)(void *)slot, (uint32_t)n);
	xvl_wr32((uint32_t *)(void *)(slot + 4), mb->session);
	xvl_wr32((uint32_t *)(void *)(slot + 8), 0);
	xvl_wr32((uint32_t *)(void *)(slot + 12), 0);
	mb->tx++;
	/* Release: the slot is complete before the peer can see the index cover it. */
	wr32_release(tx_prod(mb), mb->tx);
	return 0;
}

bool xvl_mbox_can_send(const struct xvl_mbox *mb)
{
	if (!mb || !mb->base || mb->broken)
		return false;
	return mb->tx - rd32_acquire(tx_cons(mb)) < mb->n_slots;
}

bool xvl_mbox_pending(const struct xvl_mbox *mb)
{
	if (!mb || !mb->base || mb->broken)
		return false;
	return rd32_acquire(rx_prod(mb)) != mb->rx;
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The direction a message may travel in: requests to the device, replies and EVENTs to the driver. */
static bool direction_ok(const struct xvl_mbox *mb, const struct xvl_msg *m)
{
	bool to_driver = xvl_msg_is_reply(m) || m->type == XVL_MSG_EVENT;
	return mb->driver ? to_driver : !to_driver;
}

int xvl_mbox_recv(struct xvl_mbox *mb, struct xvl_msg *m)
{
	if (!mb || !mb->base || !m)
		return -EINVAL;
	if (mb->broken)
		return mb->broken;
	int rc = check_peer(mb);
	if (rc < 0)
		return rc;
	uint32_t avail = rd32_acquire(rx_prod(mb)) - mb->rx;
	if (avail == 0)
		return 0;
	if (avail > mb->n_slots)
		return break_link(mb, -EPROTO, "the peer's producer index is more than a ring ahead");

	/* Copy the slot out once; from here on only the copy is looked at. */
	uint8_t buf[XVL_MBOX_SLOT_HDR + XVL_MSG_MAX_SIZE];
	xvl_memcpy(buf, rx_slot(mb, mb->rx), sizeof(buf));
	mb->rx++;
	/* Release: our reads of the slot are done before the peer may reuse it. */
	wr32_release(rx_cons(mb), mb->rx);

	uint32_t len = le32_at(buf);
	if (len < XVL_MSG_HDR_SIZE || len > XVL_MSG_MAX_SIZE)
		return break_link(mb, -EMSGSIZE, "a mailbox slot's length is outside 16..512");
	if (le32_at(buf + 4) != mb->session)
		return break_link(mb, -EPROTO, "a mailbox slot is stamped with another session's epoch");
	rc = xvl_msg_decode(buf + XVL_MBOX_SLOT_HDR, len, m);
	if (rc < 0)
		return break_link(mb, rc, "a malformed link message in the mailbox");
	if (!direction_ok(mb, m))
		return break_link(mb, -EPROTO, mb->driver ? "a request where replies and events travel"
							  : "a reply or event where requests travel");
	return 1;
}

void xvl_mbox_close(struct xvl_mbox *mb)
{
	if (!mb || !mb->base)
		return;
	signal_closed(mb);
}
