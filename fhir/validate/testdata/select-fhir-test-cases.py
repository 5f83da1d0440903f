import json,subprocess,sys,os
R='/work/.mirror/FHIR+fhir-test-cases/repo'
def show(p):
    return subprocess.run(['git','-C',R,'show','HEAD:'+p],capture_output=True).stdout
m=json.loads(show('validator/manifest.json'))
served=set('ServiceRequest CarePlan Goal Encounter EpisodeOfCare Patient Organization Practitioner PractitionerRole CareTeam RelatedPerson Provenance'.split())
ok_keys={'name','file','version','java','module','documentation','description','firely-sdk-current','firely-sdk-wip','brianpos','explanation','examples','security-checks','dotnet-brianpos'}
out=[];skipped=[]
for t in m['test-cases']:
    if t.get('version') not in ('4.0','4.0.1'): continue
    f=t['file']
    if not f.endswith('.json') : continue
    try: res=json.loads(show('validator/'+f))
    except Exception as e: res=None
    rt=res.get('resourceType') if isinstance(res,dict) else None
    if rt not in served: continue
    if 'no security checks' in t.get('description',''):
        skipped.append((t['name'],'tests the reference validator with its security checks off; crs always applies them (pat-security-bad-string is the same resource with them on)'))
        continue
    extra=set(t)-ok_keys
    j=t.get('java')
    if extra: skipped.append((t['name'],sorted(extra))); continue
    if not isinstance(j,str): skipped.append((t['name'],'no java outcome')); continue
    b=show('validator/outcomes/'+j)
    if not b: skipped.append((t['name'],'java outcome file missing')); continue
    oc=json.loads(b)
    errs=[i for i in oc.get('issue',[]) if i.get('severity') in('error','fatal')]
    extmsgs=('could not be found so is not allowed here','is not allowed to be used at this point','Example URLs are not allowed','The extension URL must not contain a version')
    if any(any(x in (i.get('details',{}).get('text','')) for x in extmsgs) for i in errs):
        skipped.append((t['name'],'its verdict rests on extension definitions the reference validator loads from packages (hl7.fhir.uv.extensions, other IGs) or cannot find'))
        continue
    out.append(dict(name=t['name'],file=f,errors=len(errs),messages=[((i.get('expression') or [''])[0]+': '+i.get('details',{}).get('text',''))[:300] for i in errs]))
dst=sys.argv[1]
os.makedirs(dst,exist_ok=True)
for o in out:
    open(os.path.join(dst,o['file']),'wb').write(show('validator/'+o['file']))
json.dump(dict(commit=subprocess.run(['git','-C',R,'rev-parse','HEAD'],capture_output=True,text=True).stdout.strip(),cases=out,excluded=[dict(name=n,why=w if isinstance(w,str) else 'needs '+', '.join(w)) for n,w in skipped]),open(os.path.join(dst,'manifest.json'),'w'),indent=1)
print(len(out), len(skipped))
