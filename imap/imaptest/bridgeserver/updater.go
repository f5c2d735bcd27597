package main

// The updater plays Bridge's event loop: after the connector changed a
// message or a label, it tells gluon the new state (a message's mailboxes
// and flags, a mailbox made or gone) through the connector's update
// channel. Connector calls only queue work: gluon calls them inside its
// own database transaction, which an update must wait for.

import (
	"context"
	"log"
	"sync"
	"time"

	"github.com/ProtonMail/gluon/imap"
)

type updater struct {
	acct *account
	ch   chan imap.Update

	mu     sync.Mutex
	queue  []work
	queued map[string]bool // message IDs in queue
	wake   chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// work is one thing to tell gluon: a message's state (msg) or an update.
type work struct {
	msg    string
	update func() imap.Update
}

func newUpdater(a *account) *updater {
	ctx, cancel := context.WithCancel(context.Background())
	u := &updater{
		acct:   a,
		ch:     make(chan imap.Update),
		queued: map[string]bool{},
		wake:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go u.run()
	return u
}

func (u *updater) add(w work) {
	u.mu.Lock()
	if w.msg != "" {
		if u.queued[w.msg] {
			u.mu.Unlock()
			return
		}
		u.queued[w.msg] = true
	}
	u.queue = append(u.queue, w)
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// message queues telling gluon where message id is now (or that it is
// gone).
func (u *updater) message(id string) { u.add(work{msg: id}) }

func (u *updater) mailboxCreated(mb imap.Mailbox) {
	u.add(work{update: func() imap.Update { return imap.NewMailboxCreated(mb) }})
}

func (u *updater) mailboxDeleted(id imap.MailboxID) {
	u.add(work{update: func() imap.Update { return imap.NewMailboxDeleted(id) }})
}

func (u *updater) next() (work, bool) {
	for {
		u.mu.Lock()
		if len(u.queue) > 0 {
			w := u.queue[0]
			u.queue = u.queue[1:]
			delete(u.queued, w.msg)
			u.mu.Unlock()
			return w, true
		}
		u.mu.Unlock()
		select {
		case <-u.wake:
		case <-u.ctx.Done():
			return work{}, false
		}
	}
}

func (u *updater) run() {
	defer close(u.done)
	for {
		w, ok := u.next()
		if !ok {
			return
		}
		if w.update != nil {
			if err := u.push(u.ctx, w.update()); err != nil && u.ctx.Err() == nil {
				log.Printf("%s: %v", u.acct.name, err)
			}
			continue
		}
		// The transaction that made the message may not have committed
		// yet: gluon then does not know it. Try again a little later.
		for try := 0; ; try++ {
			err := u.push(u.ctx, u.messageUpdate(w.msg))
			if err == nil || u.ctx.Err() != nil {
				break
			}
			if err.Error() != errNoSuchMessage.Error() || try == 500 {
				log.Printf("%s: message %s: %v", u.acct.name, w.msg, err)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (u *updater) messageUpdate(id string) imap.Update {
	a := u.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.msgs[id]
	if !ok {
		return imap.NewMessagesDeleted(imap.MessageID(id))
	}
	return imap.NewMessageMailboxesUpdated(imap.MessageID(id), a.mailboxes(m), m.flags())
}

// push hands gluon one update and waits until it is applied.
func (u *updater) push(ctx context.Context, up imap.Update) error {
	select {
	case u.ch <- up:
	case <-ctx.Done():
		return ctx.Err()
	}
	err, _ := up.WaitContext(ctx)
	return err
}

// stop ends the updater; gluon calls it through Close when it lets the
// user go.
func (u *updater) stop() {
	u.once.Do(func() {
		u.cancel()
		<-u.done
		close(u.ch)
	})
}
