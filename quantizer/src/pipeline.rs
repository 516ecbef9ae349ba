//! Ordered parallel production with overlapped consumption: workers encode batch k+1 while the
//! calling thread writes batch k. Memory: 2 × threads buffers.

/// Calls `produce(i, buf)` for every `i in 0..n` on `threads` workers and `consume(i, buf)` for
/// each in increasing order on the calling thread. Stops at the first consumer error.
pub fn run_ordered<P, C, E>(n: usize, threads: usize, produce: P, mut consume: C) -> Result<(), E>
where
    P: Fn(usize, &mut Vec<u8>) + Sync,
    C: FnMut(usize, &[u8]) -> Result<(), E>,
{
    let threads = threads.max(1);
    if n == 0 {
        return Ok(());
    }
    if n == 1 {
        let mut buf = Vec::new();
        produce(0, &mut buf);
        return consume(0, &buf);
    }
    let mut cur: Vec<Vec<u8>> = (0..threads).map(|_| Vec::new()).collect();
    let mut next: Vec<Vec<u8>> = (0..threads).map(|_| Vec::new()).collect();
    let batches = n.div_ceil(threads);
    let count = |batch: usize| n.saturating_sub(batch * threads).min(threads);
    let produce = &produce;
    std::thread::scope(|s| {
        for (k, buf) in cur.iter_mut().enumerate().take(count(0)) {
            s.spawn(move || produce(k, buf));
        }
    });
    for b in 0..batches {
        let start = b * threads;
        std::thread::scope(|s| {
            if b + 1 < batches {
                let nstart = start + threads;
                for (k, buf) in next.iter_mut().enumerate().take(count(b + 1)) {
                    s.spawn(move || {
                        buf.clear();
                        produce(nstart + k, buf)
                    });
                }
            }
            for (k, buf) in cur.iter().enumerate().take(count(b)) {
                consume(start + k, buf)?;
            }
            Ok(())
        })?;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_and_coverage() {
        for n in [0usize, 1, 2, 3, 7, 16, 33] {
            for t in [1usize, 2, 3, 8] {
                let mut seen = Vec::new();
                super::run_ordered::<_, _, ()>(
                    n,
                    t,
                    |i, b| b.extend_from_slice(&(i as u32).to_le_bytes()),
                    |i, b| {
                        assert_eq!(b, (i as u32).to_le_bytes());
                        seen.push(i);
                        Ok(())
                    },
                )
                .unwrap();
                assert_eq!(seen, (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn stops_on_error() {
        let mut calls = 0;
        let r = super::run_ordered(
            10,
            2,
            |_, _| {},
            |i, _| {
                calls += 1;
                if i == 3 {
                    Err(i)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(3));
        assert_eq!(calls, 4);
    }
}
