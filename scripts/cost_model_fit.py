"""Issue 15: fits the planner's cost-model constants (src/fitlm/plan/search.cpp) to measured
`fitlm bench` steps (bench/NOTES.md sessions 4, 12, 13; one H100, one H200) and prints each
prediction with its error. The model here mirrors predict_speed in search.cpp; after changing
the constants there, `python3 scripts/cost_model_fit.py --check build/fitlm` compares the
planner itself against the same measurements. Needs numpy.
  python3 scripts/cost_model_fit.py [--loo] [--check FITLM_BIN]"""
import json
import math
import subprocess
import sys

import numpy as np
SEQ=2048
M={ # vocab,h,i,L,heads,kv,head_dim,tied, moe(E,k,i_moe) 
 'l1b':(128256,2048,8192,16,32,8,64,True,None),
 'l8b':(128256,4096,14336,32,32,8,128,False,None),
 'q14b':(152064,5120,13824,48,40,8,128,False,None),
 'q32b':(152064,5120,27648,64,40,8,128,False,None),
 'q3_8b':(151936,4096,12288,36,32,8,128,False,None),
 'm7b':(32768,4096,14336,32,32,8,128,False,None),
 'moe':(151936,2048,6144,48,32,4,128,False,(128,8,768)),
}
GPU={'H200':(989,4800,63),'H100':(989,3350,63)}
# name, mode, mb, rc, off(set), nf4, gpu, measured
D=[('l1b','lora',1,0,'',0,'H200',74216),('l1b','lora',4,0,'',0,'H200',83886),('l1b','lora',8,1,'',0,'H200',64729),
('l1b','full',2,0,'',0,'H200',53480),('l1b','full',4,1,'o',0,'H200',13434),('l8b','lora',1,0,'',0,'H200',16824),
('l8b','lora',4,1,'',0,'H200',12782),('l8b','lora',1,1,'w',0,'H200',3781),('l8b','lora',2,0,'a',0,'H200',17115),
('l8b','lora',4,1,'wa',0,'H200',11105),('l8b','lora',1,1,'',1,'H200',12106),('l8b','lora',4,1,'w',1,'H200',12462),
('l8b','full',1,1,'o',0,'H200',646),('l8b','lora',2,1,'o',0,'H200',12186),('q14b','lora',1,1,'',0,'H200',6524),
('q14b','lora',2,1,'',1,'H200',6508),('q14b','lora',1,0,'a',1,'H200',8399),('q3_8b','lora',2,1,'',0,'H200',11889),
('m7b','lora',1,0,'',1,'H200',16216),('q32b','lora',1,1,'w',1,'H200',2703),('moe','lora',1,1,'',0,'H200',10772),
('moe','lora',1,1,'',1,'H200',8897),('moe','lora',4,1,'',0,'H200',11823),
('l8b','lora',1,0,'',0,'H100',15917),('l8b','lora',4,0,'',0,'H100',16365)]
def dims(n):
  V,h,i,L,H,kv,hd,tied,moe=M[n]; q=H*hd; kvd=kv*hd
  attn=h*q+2*h*kvd+q*h
  dense=3*h*i
  if moe: E,k,im=moe; act=k*3*h*im; allx=E*3*h*im+h*E
  else: act=dense; allx=dense
  lora=16*((h+q)+2*(h+kvd)+(q+h)) + (0 if moe else 16*3*(h+i))
  return dict(V=V,h=h,i=(moe[1]*moe[2] if moe else i),L=L,q=q,attn=attn,mlp=act,allw=attn+allx,lora=lora,moe=moe,tied=tied)
def params_total(n):
  d=dims(n); return d['L']*d['allw']+d['V']*d['h']*(1 if d['tied'] else 2)
def predict(p,row,parts=False):
  e_peak,T0,beta,rho,gamma,nf4b,mu,kappa=p
  n,mode,mb,rc,off,nf4,g,_=row; tf,hbm,pcie=GPU[g]; hbm=hbm*1e9*0.8; d=dims(n)
  T=mb*SEQ; L=d['L']
  eff=lambda t: e_peak*t/(t+T0)
  tm=3 if mode=='full' else 2
  gemm_l=2*(d['attn']+(0 if d['moe'] else d['mlp'])); att=4*SEQ*d['q']
  fw_layer=gemm_l+att
  t=0
  t+= T*L*fw_layer*(tm+rho*rc)/(tf*1e12*eff(T))
  if d['moe']:
    E,k,im=d['moe']; te=T*k/E
    t+= T*L*2*k*3*d['h']*im*(tm+rho*rc)/(tf*1e12*eff(te))
    t+= T*L*mu*k*d['h']*2*(3+rc)/hbm
  t+= T*2*d['V']*d['h']*tm/(tf*1e12*eff(T))
  t+= T*6*d['lora']*L/(tf*1e12*eff(T))
  t+= T*L*beta*2*(d['h']+d['i'])*(3+rc)/hbm
  t+= T*gamma*4*d['V']/hbm
  if nf4: t+= L*d['allw']*nf4b*(2+rc)/hbm
  trainable = params_total(n) if mode=='full' else d['lora']*L
  if 'o' not in off: t+= 30*trainable/hbm
  copies=0
  wb=d['allw']*(0.516 if nf4 else 2)
  if 'w' in off: copies+=2*L*wb
  if 'a' in off: copies+=2*L*T*d['h']*2
  cp=copies/(pcie*1e9*0.83)
  t= max(t,cp)+kappa*min(t,cp)
  if 'o' in off: t+= 24*trainable/(pcie*1e9*1.05)
  return T/t
def err(p):
  return np.array([predict(p,r)/r[-1]-1 for r in D])
def loss(p):
  e=err(p); return np.sum(e**2)
# Nelder-Mead
def nm(f,x0,steps,it=4000):
  n=len(x0); pts=[np.array(x0,float)]
  for j in range(n):
    x=np.array(x0,float); x[j]+=steps[j]; pts.append(x)
  vals=[f(x) for x in pts]
  for _ in range(it):
    o=np.argsort(vals); pts=[pts[i] for i in o]; vals=[vals[i] for i in o]
    c=np.mean(pts[:-1],axis=0); xr=c+(c-pts[-1]); fr=f(xr)
    if fr<vals[0]:
      xe=c+2*(c-pts[-1]); fe=f(xe)
      if fe<fr: pts[-1],vals[-1]=xe,fe
      else: pts[-1],vals[-1]=xr,fr
    elif fr<vals[-2]: pts[-1],vals[-1]=xr,fr
    else:
      xc=c+0.5*(pts[-1]-c); fc=f(xc)
      if fc<vals[-1]: pts[-1],vals[-1]=xc,fc
      else:
        pts=[pts[0]+0.5*(x-pts[0]) for x in pts]; vals=[f(x) for x in pts]
  return pts[0],vals[0]
def bounded(p):
  if min(p)<0 or p[0]>1 or p[3]>1.5: return 1e9
  return loss(p)

# The constants search.cpp uses (the fit, rounded).
SHIPPED = [0.64, 100, 4.5, 0.8, 17, 1.6, 25, 0.1]
STEPS = [0.05, 30, 3, 0.2, 1, 1, 2, 0.1]
PRESET = {'l1b': 'llama-3.2-1b', 'l8b': 'llama-3.1-8b', 'q14b': 'qwen2.5-14b',
          'q32b': 'qwen2.5-32b', 'q3_8b': 'qwen3-8b', 'm7b': 'mistral-7b',
          'moe': 'qwen3-30b-a3b'}


def fit(rows, x0):
    global D
    saved, D = D, rows
    best, _ = nm(bounded, x0, STEPS)
    for _ in range(3):
        best, _ = nm(bounded, best, STEPS)
    D = saved
    return best


def check(fitlm):
    plans, ok = {}, 0
    for n, mode, mb, rc, off, nf4, g, meas in D:
        if (n, mode, g) not in plans:
            cmd = [fitlm, 'plan', '--arch', PRESET[n], '--gpus', g, '--seq', str(SEQ), '--json',
                   '--top', '0', '--max-micro-batch', '8', '--mode', mode]
            if mode != 'full':
                cmd.append('--allow-quantize')
            j = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=False).stdout)
            plans[(n, mode, g)] = j['candidates'] + j['excluded']
        want = ','.join(o for o, c in [('optimizer', 'o'), ('weights', 'w'), ('activations', 'a')]
                        if c in off) or 'none'
        k = next(k for k in plans[(n, mode, g)]
                 if k['micro_batch'] == mb and k['recompute'] == ('full' if rc else 'none') and
                 k['offload'] == want and k['quantize'] == ('nf4' if nf4 else 'none'))
        e = meas / k['tokens_per_s'] - 1
        ok += abs(e) <= 0.15
        print(f"{PRESET[n]} {mode} mb{mb} rc={rc} off={off or '-'} nf4={nf4} {g}: planner "
              f"{k['tokens_per_s']:.0f}, measured {meas} ({100 * e:+.1f}%)")
    print(f'# within 15%: {ok} of {len(D)}')


if '--check' in sys.argv:
    check(sys.argv[sys.argv.index('--check') + 1])
elif '--loo' in sys.argv:
    errs = []
    for j, row in enumerate(D):
        b = fit(D[:j] + D[j + 1:], SHIPPED)
        errs.append(predict(b, row) / row[-1] - 1)
        print(row[:7], f'left out: {100 * errs[-1]:+.1f}%')
    print(f'# leave-one-out: worst {100 * max(map(abs, errs)):.1f}%')
else:
    best = fit(D, [0.6, 78, 8, 1.0, 2, 2.5, 4, 0.15])
    names = 'e_peak T0 beta rho gamma nf4b mu kappa'.split()
    print('fit', dict(zip(names, np.round(best, 4))), 'rms', math.sqrt(loss(best) / len(D)))
    for r, e, s in zip(D, err(best), err(SHIPPED)):
        print(r, f'fit {100 * e:+.1f}%, shipped constants {100 * s:+.1f}%')
